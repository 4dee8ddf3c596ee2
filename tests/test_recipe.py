"""The recipe levers on tiny offline models: head learning rate, head warm start, early stopping,
and what LoRA trains."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from transformers import TrainerCallback

from conftest import ROOT, tiny_config
from emotion_predictor.arguments import ModelArguments
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.labels import EMOTIONS
from emotion_predictor.modeling.classification_head import head_parameter_names
from emotion_predictor.modeling.sequence_classifier import apply_lora, load_base_model, output_layer, read_metadata
from emotion_predictor.training.recipe import run_fine_tuning


class Capture(TrainerCallback):
    """Keeps the head's output layer and the optimizer's groups as training starts."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        layer = output_layer(model, 7)
        self.head = (layer.weight.detach().clone(), layer.bias.detach().clone())
        self.groups = [
            ({n for n, p in model.named_parameters() if any(p is q for q in g["params"])}, g["initial_lr"])
            for g in optimizer.param_groups
        ]


def pooler_features(model_dir: str, texts: list[str]) -> np.ndarray:
    """What BERT's classification head reads, computed independently of classification_head.py."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return encoder(**tokenizer(texts, return_tensors="pt", padding=True)).pooler_output.numpy()


@pytest.mark.parametrize("use_lora", [False, True])
def test_head_warm_start_starts_from_the_fitted_logistic_regression(
    tmp_path, tiny_model_dir, tiny_dataset_dir, use_lora
):
    capture = Capture()
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            str(tmp_path / "run"),
            use_lora=use_lora,
            max_steps=1,
            head_warm_start="logistic_regression",
            class_weights="balanced",
        ),
        callbacks=[capture],
    )
    train = prepare_splits(tiny_dataset_dir, splits=["train"]).splits["train"]
    labels = train["label"].to_numpy()
    weights = json.loads((tmp_path / "run" / "metrics.json").read_text())["class_weights"]
    features = pooler_features(tiny_model_dir, [t[-1] for t in train["turns"]])
    probe = LogisticRegression(max_iter=1000).fit(features, labels, sample_weight=np.asarray(weights)[labels])
    weight, bias = capture.head
    for row, cls in enumerate(probe.classes_):
        np.testing.assert_allclose(weight[cls].numpy(), probe.coef_[row], atol=2e-3)
        assert bias[cls].item() == pytest.approx(probe.intercept_[row], abs=2e-3)


def test_without_warm_start_the_head_is_not_the_probe(tmp_path, tiny_model_dir, tiny_dataset_dir):
    capture = Capture()
    run_fine_tuning(
        *tiny_config(tiny_model_dir, tiny_dataset_dir, str(tmp_path / "run"), max_steps=1), callbacks=[capture]
    )
    assert capture.head[0].abs().max().item() < 0.2  # transformers' init (std 0.02), far from a fitted probe


@pytest.mark.parametrize("use_lora", [False, True])
def test_head_learning_rate_applies_to_the_head_and_pooler_only(tmp_path, tiny_model_dir, tiny_dataset_dir, use_lora):
    capture = Capture()
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            str(tmp_path / "run"),
            use_lora=use_lora,
            max_steps=1,
            learning_rate=1e-4,
            head_learning_rate=3e-2,
        ),
        callbacks=[capture],
    )
    head = {n for names, lr in capture.groups if lr == 3e-2 for n in names}
    body = {n for names, lr in capture.groups if lr == 1e-4 for n in names}
    assert head and body and not head & body
    assert all("classifier" in n or "pooler" in n for n in head)
    assert any("classifier" in n for n in head) and any("pooler" in n for n in head)
    assert not any("classifier" in n or "pooler" in n for n in body)
    if use_lora:
        assert all("lora_" in n for n in body)
    saved = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert saved["head_learning_rate"] == 3e-2 and saved["head_warm_start"] == "none"


def test_lora_trains_the_pooler_and_head_and_merges_them(tmp_path, tiny_model_dir, tiny_dataset_dir):
    model, _ = load_base_model(tiny_model_dir)
    wrapped = apply_lora(model, ModelArguments(model_name_or_path=tiny_model_dir, lora_rank=4, lora_alpha=8))
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("pooler" in n and "modules_to_save" in n for n in trainable)
    assert head_parameter_names(wrapped) == {n for n in trainable if "lora_" not in n}

    out = str(tmp_path / "run")
    run_fine_tuning(*tiny_config(tiny_model_dir, tiny_dataset_dir, out, max_steps=3, learning_rate=0.05))
    base, _ = load_base_model(tiny_model_dir)
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(os.path.join(out, "model"))
    assert not torch.allclose(merged.bert.pooler.dense.weight, base.bert.pooler.dense.weight)


def frozen_full_fine_tuning(tmp_path, tiny_model_dir, tiny_dataset_dir, **settings):
    """Full fine-tuning at a learning rate so small that the validation metric never changes."""
    return run_fine_tuning(
        *tiny_config(
            tiny_model_dir, tiny_dataset_dir, str(tmp_path / "run"), use_lora=False, learning_rate=1e-12, **settings
        )
    )


def test_early_stopping_stops_when_validation_stops_improving(tmp_path, tiny_model_dir, tiny_dataset_dir):
    # The metric stays unchanged, so the second evaluation is no better than the first.
    result = frozen_full_fine_tuning(
        tmp_path,
        tiny_model_dir,
        tiny_dataset_dir,
        num_train_epochs=6,
        early_stopping_patience=1,
        metric_for_best_model="Macro_F1",
    )
    assert result.metrics["epochs_trained"] == 2
    assert len(result.metrics["validation_curve"]) == 2
    assert result.metrics["validation_curve"][0]["Macro_F1"] == result.metrics["validation_curve"][1]["Macro_F1"]


def test_without_early_stopping_every_epoch_runs(tmp_path, tiny_model_dir, tiny_dataset_dir):
    result = frozen_full_fine_tuning(tmp_path, tiny_model_dir, tiny_dataset_dir, num_train_epochs=3)
    assert result.metrics["epochs_trained"] == 3 and len(result.metrics["validation_curve"]) == 3


def test_score_test_false_leaves_test_unscored(tmp_path, tiny_model_dir, tiny_dataset_dir):
    result = run_fine_tuning(
        *tiny_config(tiny_model_dir, tiny_dataset_dir, str(tmp_path / "run"), max_steps=1), score_test=False
    )
    assert "validation" in result.metrics and "test" not in result.metrics
    assert set(result.probabilities) == {"validation"}


@pytest.mark.parametrize("use_lora", [False, True])
def test_mean_pooling_run_saves_a_model_that_reads_the_token_mean(tmp_path, tiny_model_dir, tiny_dataset_dir, use_lora):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = str(tmp_path / "run")
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            out,
            use_lora=use_lora,
            max_steps=2,
            pooling="mean",
            head_warm_start="logistic_regression",
        )
    )
    folder = os.path.join(out, "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert type(model).__name__ == "MeanPoolingBertForSequenceClassification" and model.bert.pooler is None
    assert read_metadata(folder)["pooling"] == "mean"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["hello how are you", "i lost my keys at the party"], return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))
        np.testing.assert_allclose(model(**batch).logits.numpy(), expected.numpy(), atol=1e-5)


def test_mean_pooling_model_loads_in_plain_transformers_only_with_remote_code(
    tmp_path, tiny_model_dir, tiny_dataset_dir
):
    import subprocess
    import sys

    out = str(tmp_path / "run")
    run_fine_tuning(*tiny_config(tiny_model_dir, tiny_dataset_dir, out, use_lora=False, max_steps=1, pooling="mean"))
    from emotion_predictor.prediction.inference import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(os.path.join(out, "model"))
    with torch.no_grad():
        ours = torch.softmax(model.eval()(**tokenizer(["i lost my keys"], return_tensors="pt")).logits, -1)[0].tolist()
    # A fresh interpreter without this project on its path: only transformers and the saved folder.
    # The editable install puts the repository root on every interpreter's path; take it off again.
    script = (
        "import importlib.util, json, os, sys\n"
        f"root = os.path.realpath({ROOT!r})\n"
        "sys.path[:] = [p for p in sys.path if os.path.realpath(p or '.') != root]\n"
        "assert importlib.util.find_spec('mean_pooling') is None, 'the project is still importable'\n"
        "from transformers import pipeline\n"
        "try:\n"
        "    pipeline('text-classification', model=sys.argv[1])\n"
        "    print('loaded-without-remote-code')\n"
        "except ValueError:\n"
        "    pass\n"
        "classify = pipeline('text-classification', model=sys.argv[1], trust_remote_code=True, top_k=None)\n"
        "scores = classify(['i lost my keys'])[0]\n"
        "print('SCORES', json.dumps({s['label']: s['score'] for s in scores}))\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run(
        [sys.executable, "-c", script, os.path.join(out, "model")],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded-without-remote-code" not in done.stdout
    scores = json.loads(done.stdout.split("SCORES ", 1)[1])
    assert [scores[name] for name in EMOTIONS] == pytest.approx(ours, abs=1e-5)


def test_mean_pooling_refuses_non_bert_models(tmp_path):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from emotion_predictor.errors import UserError
    from emotion_predictor.modeling.sequence_classifier import with_mean_pooling

    model = RobertaForSequenceClassification(
        RobertaConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=7,
        )
    )
    with pytest.raises(UserError, match="pooling 'mean' is implemented for BERT encoders"):
        with_mean_pooling(model)
