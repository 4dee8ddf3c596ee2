"""The auxiliary current-emotion task (`current_emotion_loss_weight` > 0), trained alongside the
next-turn forecast.

DailyDialog labels every utterance, so each train row knows the emotion of its own, current
utterance besides the next turn's (the target). A second output layer, `current_emotion_head`,
reads the same features as the classifier's output layer and learns to recognise the current
emotion; its loss, times the weight, is added to the forecasting loss. The encoder so learns
emotion recognition, which an emotion-pretrained base model such as
j-hartmann/emotion-english-distilroberta-base brings and all-MiniLM-L6-v2 lacks, from the same
batches at no extra encoder cost. Only training uses it: `detach` removes the head before the
model is saved, so the saved model (and a LoRA run's adapter) is a plain next-turn classifier.

The current-emotion loss is the run's loss (focal or cross entropy, same gamma), with the class
weights of the current emotions of the train rows under the run's `class_weights` rule (balanced,
sqrt_balanced or none; a list of weights is for the next turn's classes and is not reused: such a
run gets balanced weights here), summed over the rows and divided by the same row count as the
forecasting loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emotion_predictor.data.utils import UNKNOWN_EMOTION
from emotion_predictor.errors import UserError
from emotion_predictor.labels import NUM_LABELS
from emotion_predictor.modeling.sequence_classifier import output_layer
from emotion_predictor.training.focal_loss import FocalLoss, class_weights_for

HEAD_NAME = "current_emotion_head"
COLUMN = "current_labels"  # the train dataset column the Trainer passes through to the loss


class CurrentEmotionTask:
    """The auxiliary head on `model`, the features it reads, and its weighted loss.

    Made before LoRA wraps the model, so that PEFT trains the head as one of its `modules_to_save`
    (and keeps it in checkpoints); `watch` then hooks the output layer the wrapped model runs.
    """

    def __init__(self, model: nn.Module, weight: float, loss: FocalLoss) -> None:
        layer = output_layer(model, NUM_LABELS)  # before our head exists: it has the same shape
        self.inner = model
        self.weight = weight
        self.loss_fn = loss
        model.add_module(HEAD_NAME, nn.Linear(layer.in_features, NUM_LABELS))
        self.features: torch.Tensor | None = None
        self.hook: Any = None

    def watch(self, model: nn.Module) -> None:
        """Keep the input of the output layer that `model` (the trained model, PEFT or not) runs."""
        running = [
            m
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear)
            and m.out_features == NUM_LABELS
            and HEAD_NAME not in name
            and "original_module" not in name  # PEFT's frozen copy of a module it trains
        ]
        self.hook = running[-1].register_forward_pre_hook(self.keep_features)

    def keep_features(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.features = args[0]

    def loss_sum(self, current_labels: torch.Tensor) -> torch.Tensor:
        """The weighted current-emotion loss of the batch the model last ran on, summed over rows."""
        logits = getattr(self.inner, HEAD_NAME)(self.features)
        return self.weight * self.loss_fn(logits, current_labels)

    def detach(self, model: nn.Module) -> None:
        """Remove the head and the hook: `model` is the plain classifier (or its PEFT wrapper) again."""
        self.hook.remove()
        self.features = None
        delattr(self.inner, HEAD_NAME)
        for config in getattr(model, "peft_config", {}).values():  # what PEFT saves in the adapter
            config.modules_to_save = [m for m in config.modules_to_save if m != HEAD_NAME]


def current_emotion_loss(base: FocalLoss, class_weights: str | list[float], current_labels: np.ndarray) -> FocalLoss:
    """The run's loss with class weights for the current emotions (see the module docstring)."""
    alpha = class_weights_for("balanced" if isinstance(class_weights, list) else class_weights, current_labels)
    return FocalLoss(alpha=alpha, gamma=base.gamma, reduction="sum")


def require_current_emotions(train: pd.DataFrame, weight: float, dataset: str) -> None:
    """Refuse train rows without a current emotion (a source in the shifted layout)."""
    if (train["current_label"] == UNKNOWN_EMOTION).any():
        raise UserError(
            f"current_emotion_loss_weight is {weight}, but {dataset} gives only the next turn's emotion (shifted "
            "layout: text, label), not each utterance's: use a dialogue- or utterance-level source, or set "
            "current_emotion_loss_weight to 0"
        )
