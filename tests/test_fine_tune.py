"""Fine-tuning end to end on tiny offline models: outputs, losses, heads, resume, hardware."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from sklearn.utils.class_weight import compute_class_weight
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, pipeline

from conftest import ROOT, build_tiny_bert, tiny_config
from emotion_predictor.arguments import LossArguments, ModelArguments
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.labels import EMOTIONS
from emotion_predictor.modeling.sequence_classifier import apply_lora, load_base_model
from emotion_predictor.training.focal_loss import class_weights_for
from emotion_predictor.training.recipe import run_fine_tuning
from emotion_predictor.training.trainer import build_loss
from emotion_predictor.training.trainer_settings import (
    prepare_tracking,
    prune_checkpoints,
    resume_target,
    training_arguments,
)

REFERENCE_ORDER = {0: "anger", 1: "disgust", 2: "fear", 3: "joy", 4: "neutral", 5: "sadness", 6: "surprise"}


def read_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as handle:
        return json.load(handle)


def saved_weights(output_dir: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(output_dir, "model", "model.safetensors"))


def dropout_free_copy(model_dir: str, folder: str) -> str:
    """The tiny BERT without dropout: two ways of batching the same rows then see the same network."""
    AutoModelForSequenceClassification.from_pretrained(
        model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    return folder


# One plain SGD step over 8 train rows (one epoch), full fine-tuning: the step is the gradient times
# the learning rate, with no clipping, warm-up or Adam normalisation to hide a wrongly scaled loss.
ONE_SGD_STEP = dict(
    use_lora=False,
    max_train_samples=8,
    max_steps=1,
    optim="sgd",
    learning_rate=0.5,
    lr_scheduler_type="constant",
    warmup_ratio=0.0,
    weight_decay=0.0,
    max_grad_norm=0.0,
    load_best_model_at_end=False,
    save_strategy="no",
    class_weights=[0.5, 2, 3, 4, 1, 2, 2],
)


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-6), name


def encoder_change(weights: dict[str, torch.Tensor], model_dir: str) -> float:
    """The largest change of an encoder weight from the base model's (the head is new)."""
    initial = load_file(os.path.join(model_dir, "model.safetensors"))
    return max((v - initial[n]).abs().max().item() for n, v in weights.items() if n.startswith("bert."))


def test_focal_run_leaves_the_documented_outputs(tiny_run_dir):
    for name in ("run_config.json", "data_stats.json", "metrics.json", "report.txt"):
        assert os.path.isfile(os.path.join(tiny_run_dir, name))
    assert os.path.isfile(os.path.join(tiny_run_dir, "adapter", "adapter_config.json"))
    # Pruned once finished: the newest checkpoint alone, which a resume needs (the best model is in model/).
    [kept] = os.listdir(os.path.join(tiny_run_dir, "checkpoints"))
    state = read_json(tiny_run_dir, "checkpoints", kept, "trainer_state.json")
    assert kept == f"checkpoint-{state['global_step']}" and state["global_step"] == state["max_steps"] > 1
    metadata = read_json(tiny_run_dir, "model", "emotion_predictor.json")
    assert metadata["context_turns"] == 0 and metadata["context_separator"] == " [SEP] "
    config = read_json(tiny_run_dir, "model", "config.json")
    assert config["id2label"] == {str(i): n for i, n in enumerate(EMOTIONS)}
    metrics = read_json(tiny_run_dir, "metrics.json")
    for split in ("validation", "test"):
        assert set(metrics[split]) >= {
            "Accuracy",
            "Balanced_Accuracy",
            "F1-score",
            "Macro_F1",
            "F1-all-class",
            "Classes-with-value",
        }
    stats = read_json(tiny_run_dir, "data_stats.json")
    assert stats["splits"]["test"]["rows"] == sum(stats["splits"]["test"]["counts"].values())
    assert read_json(tiny_run_dir, "run_config.json")["loss"] == "focal"
    assert not [n for n in os.listdir(tiny_run_dir) if ".tmp-" in n]


def test_merged_model_in_pipeline_matches_adapter_plus_base(tiny_run_dir, tiny_model_dir, tiny_dataset_dir):
    from peft import PeftModel

    texts = ["hello how are you", "i lost my keys", "wow really great party tonight"]
    classify = pipeline("text-classification", model=os.path.join(tiny_run_dir, "model"), top_k=None)
    merged = {row["label"]: row["score"] for row in classify(texts[1:2])[0]}
    assert set(merged) == set(EMOTIONS)
    base, _ = load_base_model(tiny_model_dir)
    adapted = PeftModel.from_pretrained(base, os.path.join(tiny_run_dir, "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(tiny_run_dir, "adapter"))
    with torch.no_grad():
        probs = torch.softmax(adapted(**tokenizer(texts, return_tensors="pt", padding=True)).logits, -1)
    for i, name in enumerate(EMOTIONS):
        assert merged[name] == pytest.approx(probs[1, i].item(), abs=1e-5)
    pipe_labels = [max(r, key=lambda x: x["score"])["label"] for r in classify(texts)]
    assert pipe_labels == [EMOTIONS[i] for i in probs.argmax(-1).tolist()]


def test_cross_entropy_run_trains_and_records_its_loss(tmp_path, tiny_model_dir, tiny_dataset_dir):
    out = str(tmp_path / "ce")
    result = run_fine_tuning(
        *tiny_config(tiny_model_dir, tiny_dataset_dir, out, loss="cross_entropy", class_weights="none", max_steps=4)
    )
    assert read_json(out, "run_config.json")["loss"] == "cross_entropy"
    assert 0 <= result.metrics["test"]["Accuracy"] <= 1
    assert result.metrics["class_weights"] == [1.0] * 7
    history = read_json(out, "checkpoints", "checkpoint-4", "trainer_state.json")["log_history"]
    assert any("eval_F1-all-class" in entry for entry in history)


def test_head_reordering_keeps_each_named_logit(tmp_path):
    folder = build_tiny_bert(str(tmp_path / "ref"), id2label=REFERENCE_ORDER)
    original = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    model, head = load_base_model(folder)
    assert head == "reordered" and model.config.id2label[4] == "happiness"
    ids = AutoTokenizer.from_pretrained(folder)(["i lost my keys"], return_tensors="pt")
    with torch.no_grad():
        before, after = original(**ids).logits[0], model.eval()(**ids).logits[0]
    for ours, name in enumerate(EMOTIONS):
        theirs = {"happiness": "joy"}.get(name, name)
        index = [i for i, n in REFERENCE_ORDER.items() if n == theirs][0]
        assert after[ours].item() == pytest.approx(before[index].item(), abs=1e-6)


def test_unrelated_labels_get_a_new_head(tiny_model_dir):
    model, head = load_base_model(tiny_model_dir)
    assert head == "new" and model.config.num_labels == 7 and model.config.id2label[0] == "neutral"


def test_unknown_model_type_without_targets_is_a_clear_error(tiny_model_dir):
    model, _ = load_base_model(tiny_model_dir)
    model.config.model_type = "mystery"
    with pytest.raises(UserError, match="no default lora_target_modules for model type 'mystery'.*query"):
        apply_lora(model, ModelArguments(model_name_or_path="x"))
    with pytest.raises(UserError, match="lora_target_modules nope not found"):
        apply_lora(model, ModelArguments(model_name_or_path="x", lora_target_modules=["nope"]))


def test_missing_model_folder_and_uncached_hub_id_fail_at_once(tmp_path):
    with pytest.raises(UserError, match="model folder .* does not exist"):
        load_base_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_base_model("someone/not-a-cached-model")


def test_balanced_class_weights_follow_scikit_learn():
    labels = np.array([0] * 50 + [1] * 5 + [4] * 20 + [6] * 5)
    weights = class_weights_for(LossArguments().class_weights, labels)
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 4, 6]), y=labels)
    assert np.allclose(np.array(weights)[[0, 1, 4, 6]], expected)
    assert weights[2] == weights[3] == weights[5] == 0.0
    sqrt = class_weights_for("sqrt_balanced", labels)
    assert np.allclose(np.array(sqrt)[[0, 1, 4, 6]], np.sqrt(expected))  # 50 neutral rows: 0.4 -> 0.632
    assert sqrt[2] == sqrt[3] == sqrt[5] == 0.0
    assert class_weights_for("none", labels) == [1.0] * 7
    assert class_weights_for([1, 2, 3, 4, 5, 6, 7], labels) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_sqrt_balanced_weights_reach_the_loss_and_the_saved_files(tmp_path, tiny_model_dir, tiny_dataset_dir):
    out = tmp_path / "run"
    run_fine_tuning(
        *tiny_config(tiny_model_dir, tiny_dataset_dir, str(out), max_steps=1, class_weights="sqrt_balanced")
    )
    labels = prepare_splits(tiny_dataset_dir, splits=["train"]).splits["train"]["label"].to_numpy()
    present = np.unique(labels)
    expected = np.zeros(7)
    expected[present] = np.sqrt(compute_class_weight("balanced", classes=present, y=labels))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_weights"] == pytest.approx(expected.tolist())
    assert json.loads((out / "run_config.json").read_text())["class_weights"] == "sqrt_balanced"
    # F1-all-class keeps its one definition, the balanced weights, whatever the loss's weights.
    saved = json.loads((out / "model" / "emotion_predictor.json").read_text())
    assert saved["f1_all_class_weights"] == pytest.approx((expected**2).tolist())
    assert not [n for n in os.listdir(out / "model") if n.endswith(".onnx")]  # tiny_config's export_onnx "none"


def test_cross_entropy_is_weighted_cross_entropy_whatever_focal_gamma_says():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 7) * 3, torch.randint(0, 7, (16,))
    weights = [0.5, 2, 3, 4, 1, 2, 2]
    loss_fn = build_loss(LossArguments(loss="cross_entropy", focal_gamma=8), weights)
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights), reduction="none").sum()
    assert loss_fn.gamma == 0 and torch.allclose(loss_fn(logits, target), expected, atol=1e-5)


def test_gradient_accumulation_step_equals_the_large_batch_step(tmp_path, tiny_model_dir, tiny_dataset_dir):
    model_dir = dropout_free_copy(tiny_model_dir, str(tmp_path / "model"))
    runs = {}
    for name, batch, accumulation in (("whole", 8, 1), ("accumulated", 4, 2)):
        out = str(tmp_path / name)
        run_fine_tuning(
            *tiny_config(
                model_dir,
                tiny_dataset_dir,
                out,
                batch_size=batch,
                gradient_accumulation_steps=accumulation,
                **ONE_SGD_STEP,
            )
        )
        runs[name] = saved_weights(out)
    assert_same_weights(runs["accumulated"], runs["whole"])
    assert encoder_change(runs["whole"], model_dir) > 1e-3  # the step did change the weights


def test_cpu_replaces_fp16_and_paged_optimizer(tmp_path, tiny_model_dir, tiny_dataset_dir, caplog):
    *_, train_cfg, passthrough = tiny_config(
        tiny_model_dir, tiny_dataset_dir, str(tmp_path), fp16=True, optim="paged_adamw_32bit"
    )
    with caplog.at_level(logging.WARNING):
        args = training_arguments(train_cfg, passthrough)
    if torch.cuda.is_available():
        pytest.skip("this check is about machines without CUDA")
    assert args.fp16 is False and args.optim == "adamw_torch"
    assert [r.message for r in caplog.records if "No CUDA device" in r.message] == [
        "No CUDA device: fp16 -> float32, optim paged_adamw_32bit -> adamw_torch"
    ]


def test_wandb_goes_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert prepare_tracking(["wandb"]) == ["wandb"]
    assert os.environ["WANDB_MODE"] == "offline"
    assert prepare_tracking(["none"]) == ["none"]


# Run as `python -c SCRIPT MARKER MODEL DATASET OUTPUT_DIR SETTINGS_JSON` in tests/ (so that
# `conftest` is importable; the project is installed): trains with tiny_config, then hangs right
# after its first checkpoint is written, with MARKER created as the signal, so that the test's
# SIGKILL lands at a known step.
HANG_AFTER_FIRST_CHECKPOINT = textwrap.dedent(
    """
    import json, sys, time
    from transformers import TrainerCallback
    from conftest import tiny_config
    from emotion_predictor.training.recipe import run_fine_tuning

    class Hang(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            open(sys.argv[1], "w").close()
            time.sleep(3600)

    run_fine_tuning(*tiny_config(*sys.argv[2:5], **json.loads(sys.argv[5])), callbacks=[Hang()])
    """
)


class CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    tmp_path, tiny_model_dir, tiny_dataset_dir
):
    # No best-model reload: the final weights are those of the last step, which a faulty resume changes.
    settings = dict(
        max_steps=3,
        eval_strategy="steps",
        eval_steps=1,
        max_eval_samples=20,
        save_total_limit=10,
        load_best_model_at_end=False,
    )
    straight = run_fine_tuning(
        *tiny_config(tiny_model_dir, tiny_dataset_dir, str(tmp_path / "a"), keep_checkpoints=True, **settings)
    )
    assert sorted(os.listdir(tmp_path / "a" / "checkpoints")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]

    out, marker = tmp_path / "b", tmp_path / "saved"
    argv = [str(marker), tiny_model_dir, tiny_dataset_dir, str(out), json.dumps(settings)]
    with subprocess.Popen(
        [sys.executable, "-c", HANG_AFTER_FIRST_CHECKPOINT, *argv], cwd=os.path.join(ROOT, "tests")
    ) as proc:
        try:
            while not marker.exists():
                assert proc.poll() is None, "the training subprocess ended before its first checkpoint"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert os.listdir(out / "checkpoints") == ["checkpoint-1"] and not os.path.exists(out / "metrics.json")
    # What a kill during the next save leaves: a newer checkpoint with the weights but no trainer state.
    shutil.copytree(out / "checkpoints" / "checkpoint-1", out / "checkpoints" / "checkpoint-2")
    os.remove(out / "checkpoints" / "checkpoint-2" / "trainer_state.json")

    steps = CountSteps()
    resumed = run_fine_tuning(
        *tiny_config(tiny_model_dir, tiny_dataset_dir, str(out), resume_from_checkpoint=True, **settings),
        callbacks=[steps],
    )
    assert steps.steps == 2  # it went on from step 1 rather than starting over
    assert os.listdir(out / "checkpoints") == ["checkpoint-3"]  # pruned to the newest once finished
    assert_same_weights(saved_weights(str(out)), saved_weights(straight.output_dir))
    for split in ("validation", "test"):
        assert resumed.metrics[split] == pytest.approx(straight.metrics[split], abs=1e-9), split


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, tiny_model_dir, tiny_dataset_dir):
    with pytest.raises(UserError, match="holds no complete checkpoint"):
        run_fine_tuning(*tiny_config(tiny_model_dir, tiny_dataset_dir, str(tmp_path), resume_from_checkpoint=True))


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    for step, complete in ((5, True), (10, True), (15, False), (20, False)):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-x").mkdir()
    newest = SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=True)
    assert resume_target(newest) == str(folder / "checkpoint-10")
    explicit = SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=str(folder / "checkpoint-5"))
    assert resume_target(explicit) == str(folder / "checkpoint-5")
    cut_off = SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=str(folder / "checkpoint-20"))
    with pytest.raises(UserError, match="checkpoint-20' is not a complete checkpoint"):
        resume_target(cut_off)
    assert resume_target(SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=None)) is None


def test_pruning_keeps_the_newest_complete_checkpoint_alone(tmp_path):
    folder = tmp_path / "checkpoints"
    for step, complete in ((5, True), (10, True), (15, False)):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (folder / "runs").mkdir()  # not a checkpoint: left alone
    deleted = prune_checkpoints(str(tmp_path))
    assert deleted == [str(folder / "checkpoint-5"), str(folder / "checkpoint-15")]
    assert sorted(os.listdir(folder)) == ["checkpoint-10", "runs"]
    assert resume_target(SimpleNamespace(output_dir=str(tmp_path), resume_from_checkpoint=True)) == str(
        folder / "checkpoint-10"
    )
    assert prune_checkpoints(str(tmp_path)) == [] and prune_checkpoints(str(tmp_path / "none")) == []


@pytest.mark.parametrize(
    "name",
    [
        "activation_checkpointing",
        # transformers' deprecated alias, still accepted; its FutureWarning is the expected outcome here.
        pytest.param("gradient_checkpointing", marks=pytest.mark.filterwarnings("ignore::FutureWarning")),
    ],
)
def test_activation_checkpointing_trains_lora_weights(name, tmp_path, tiny_model_dir, tiny_dataset_dir):
    out = str(tmp_path / "gc")
    settings = {name: True, "max_steps": 2, "lora_dropout": 0.0}
    run_fine_tuning(*tiny_config(tiny_model_dir, tiny_dataset_dir, out, **settings))

    weights = load_file(os.path.join(out, "adapter", "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(torch.count_nonzero(v) > 0 for v in lora_b)
