"""The auxiliary current-emotion task (`current_emotion_loss_weight`, current_emotion_task.py) on tiny
offline models: what the head reads, that every train batch adds its loss, and that the saved
model is the plain classifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerCallback, TrainingArguments

from conftest import tiny_config
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import ConfigError, UserError
from emotion_predictor.evaluation.metrics import balanced_class_weights
from emotion_predictor.modeling.sequence_classifier import load_base_model, output_layer, with_mean_pooling
from emotion_predictor.training.current_emotion_task import HEAD_NAME, CurrentEmotionTask, current_emotion_loss
from emotion_predictor.training.focal_loss import FocalLoss
from emotion_predictor.training.recipe import run_fine_tuning


def test_the_head_reads_what_the_output_layer_reads_and_detach_restores_the_model(tiny_model_dir):
    torch.manual_seed(0)
    model = with_mean_pooling(load_base_model(tiny_model_dir)[0]).eval()
    classifier = output_layer(model, 7)
    keys = set(model.state_dict())
    task = CurrentEmotionTask(model, 0.5, FocalLoss(alpha=[1.0] * 7, gamma=0.0, reduction="sum"))
    task.watch(model)
    batch = AutoTokenizer.from_pretrained(tiny_model_dir)(
        ["happy day today", "what a sad and long story this is"], return_tensors="pt", padding=True
    )
    labels = torch.tensor([4, 5])
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # mean pooling, computed here independently
        head = getattr(model, HEAD_NAME)
        expected = 0.5 * torch.nn.functional.cross_entropy(head(pooled), labels, reduction="sum")
        assert torch.allclose(logits, classifier(pooled), atol=1e-5)  # the forecast is untouched
        assert task.loss_sum(labels).item() == pytest.approx(expected.item(), rel=1e-5)
    task.detach(model)
    assert set(model.state_dict()) == keys and not hasattr(model, HEAD_NAME)
    model(**batch)
    assert task.features is None  # the hook is gone


def test_current_emotion_loss_weights_the_current_emotions():
    current = np.array([0, 0, 0, 4, 4, 1, 2, 3, 5, 6])
    base = FocalLoss(alpha=[9.0] * 7, gamma=2.0, reduction="sum")
    balanced = current_emotion_loss(base, "balanced", current)
    assert balanced.alpha.tolist() == pytest.approx(balanced_class_weights(current))
    assert balanced.gamma == 2.0 and balanced.reduction == "sum"
    assert current_emotion_loss(base, "none", current).alpha.tolist() == [1.0] * 7
    sqrt = current_emotion_loss(base, "sqrt_balanced", current)
    assert sqrt.alpha.tolist() == pytest.approx(np.sqrt(balanced_class_weights(current)).tolist())
    # A list is the next turn's weights: the current emotions get balanced ones.
    listed = current_emotion_loss(base, [2.0] * 7, current)
    assert listed.alpha.tolist() == pytest.approx(balanced_class_weights(current))


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_fine_tuning_adds_the_current_emotion_loss_of_every_train_row(
    tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch, weight
):
    recorded: list[int] = []
    original = CurrentEmotionTask.loss_sum

    def recording(self, current_labels):
        recorded.extend(current_labels.tolist())
        return original(self, current_labels)

    monkeypatch.setattr(CurrentEmotionTask, "loss_sum", recording)
    out = tmp_path / "run"
    result = run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            str(out),
            use_lora=False,
            pooling="mean",
            neutral_keep_ratio=0.5,
            num_train_epochs=2,
            current_emotion_loss_weight=weight,
        ),
        score_test=False,
    )
    train = prepare_splits(tiny_dataset_dir, splits=["train"], neutral_keep_ratio=0.5, seed=42).splits["train"]
    # Each train row's own emotion once per epoch, and nothing from evaluation batches.
    assert sorted(recorded) == (sorted(train["current_label"].tolist() * 2) if weight else [])
    saved = load_file(str(out / "model" / "model.safetensors"))
    assert not any(HEAD_NAME in name for name in saved)
    assert json.loads((out / "run_config.json").read_text())["current_emotion_loss_weight"] == weight
    assert result.metrics["epochs_trained"] == 2


def test_the_current_emotion_loss_changes_what_the_encoder_learns(tmp_path, tiny_model_dir, tiny_dataset_dir):
    def encoder_after(weight: float) -> dict[str, torch.Tensor]:
        out = tmp_path / f"run-{weight}"
        run_fine_tuning(
            *tiny_config(
                tiny_model_dir,
                tiny_dataset_dir,
                str(out),
                use_lora=False,
                pooling="mean",
                max_steps=3,
                current_emotion_loss_weight=weight,
            ),
            score_test=False,
        )
        return {k: v for k, v in load_file(str(out / "model" / "model.safetensors")).items() if "encoder" in k}

    plain, auxiliary = encoder_after(0.0), encoder_after(1.0)
    assert any(not torch.equal(plain[k], auxiliary[k]) for k in plain)


def test_a_shifted_source_has_no_current_emotions(tmp_path, tiny_model_dir):
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": ["hi there", "bye now"], "label": [4, 0]}).to_csv(tmp_path / f"{split}.csv", index=False)
    out = tmp_path / "run"
    with pytest.raises(UserError, match="gives only the next turn's emotion .* set current_emotion_loss_weight to 0"):
        run_fine_tuning(
            *tiny_config(tiny_model_dir, str(tmp_path), str(out), use_lora=False, current_emotion_loss_weight=0.5)
        )
    assert not (out / "run_config.json").exists()


def test_a_negative_weight_is_refused(tmp_path, tiny_model_dir, tiny_dataset_dir):
    with pytest.raises(ConfigError, match="current_emotion_loss_weight"):
        tiny_config(tiny_model_dir, tiny_dataset_dir, str(tmp_path), current_emotion_loss_weight=-1)


def test_a_lora_run_trains_the_head_and_saves_neither_adapter_nor_model_with_it(
    tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch
):
    heads: list[torch.Tensor] = []
    original = CurrentEmotionTask.loss_sum

    def recording(self, current_labels):
        heads.append(getattr(self.inner, HEAD_NAME).modules_to_save["default"].weight.detach().clone())
        assert self.features is not None and self.features.requires_grad  # the running (trained) head's input
        return original(self, current_labels)

    monkeypatch.setattr(CurrentEmotionTask, "loss_sum", recording)
    out = tmp_path / "run"
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir, tiny_dataset_dir, str(out), use_lora=True, max_steps=3, current_emotion_loss_weight=1.0
        ),
        score_test=False,
    )
    assert len(heads) == 3 and not torch.equal(heads[0], heads[-1])  # PEFT trains it
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert HEAD_NAME not in adapter_config["modules_to_save"]
    for saved in (out / "adapter" / "adapter_model.safetensors", out / "model" / "model.safetensors"):
        assert not any(HEAD_NAME in name for name in load_file(str(saved)))


def test_the_auxiliary_layer_learns_at_the_head_learning_rate(tmp_path, tiny_model_dir, tiny_dataset_dir):
    class Rates(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            self.rates = {
                name: group["initial_lr"]
                for group in optimizer.param_groups
                for name, param in model.named_parameters()
                if any(param is p for p in group["params"])
            }

    rates = Rates()
    run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            tiny_dataset_dir,
            str(tmp_path / "run"),
            use_lora=False,
            max_steps=1,
            learning_rate=0.01,
            head_learning_rate=0.5,
            current_emotion_loss_weight=1.0,
        ),
        callbacks=[rates],
        score_test=False,
    )
    assert rates.rates[f"{HEAD_NAME}.weight"] == rates.rates[f"{HEAD_NAME}.bias"] == 0.5
    assert rates.rates["bert.embeddings.word_embeddings.weight"] == 0.01


def test_dataparallel_is_refused_with_a_launch_hint(tmp_path, tiny_model_dir, tiny_dataset_dir, monkeypatch):
    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: 2))
    out = tmp_path / "run"
    config = tiny_config(tiny_model_dir, tiny_dataset_dir, str(out), use_lora=False, current_emotion_loss_weight=1)
    with pytest.raises(UserError, match="needs one process per GPU: launch with torchrun --nproc_per_node 2"):
        run_fine_tuning(*config)
    assert not (out / "run_config.json").exists()  # refused before a previous run's files are overwritten
