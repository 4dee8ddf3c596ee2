"""The Trainer of a fine-tuning run: our loss (focal or cross entropy, class weights, the
auxiliary current-emotion loss), the head's own learning rate, length-grouped or rotating batches,
and the validation metrics it logs each evaluation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from emotion_predictor.arguments import LossArguments
from emotion_predictor.evaluation.metrics import classification_metrics
from emotion_predictor.modeling.classification_head import split_head_param_groups
from emotion_predictor.training.current_emotion_task import COLUMN, CurrentEmotionTask
from emotion_predictor.training.focal_loss import FocalLoss
from emotion_predictor.training.length_bucketing import LengthBucketSampler
from emotion_predictor.training.neutral_rotation import NeutralRotation, NeutralRotationSampler

logger = logging.getLogger(__name__)


def build_loss(loss_args: LossArguments, weights: list[float]) -> FocalLoss:
    """Focal loss, or cross entropy as focal loss with gamma 0 (the same code path)."""
    gamma = loss_args.focal_gamma if loss_args.loss == "focal" else 0.0
    return FocalLoss(alpha=weights, gamma=gamma, reduction="sum")


class WeightedLossTrainer(Trainer):
    """A Trainer whose loss is our (focal or cross-entropy) loss with class weights, plus the
    auxiliary current-emotion loss when there is one (`current_emotion_task.py`), and whose
    length-grouped batches come from `LengthBucketSampler` (or `NeutralRotationSampler`).

    `compute_loss` sums the per-example losses and divides by `num_items_in_batch`, the number of
    examples in the whole accumulated batch, so gradient accumulation gives the same gradient as
    one large batch.
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        loss_fn: FocalLoss,
        head_learning_rate: float | None = None,
        rotation: NeutralRotation | None = None,
        current_emotion: CurrentEmotionTask | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.head_learning_rate = head_learning_rate
        self.rotation = rotation
        self.current_emotion = current_emotion
        # Makes Trainer count `num_items_in_batch` across accumulated micro-batches for us.
        self.model_accepts_loss_kwargs = True

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.head_learning_rate is not None:
            moved = split_head_param_groups(optimizer, self.model, self.head_learning_rate)
            logger.info("Head learning rate %g for %d parameter tensors", self.head_learning_rate, moved)
        return optimizer

    def _set_signature_columns_if_needed(self) -> None:
        # The model's forward does not take the current emotions; compute_loss does.
        super()._set_signature_columns_if_needed()
        if self.current_emotion is not None and COLUMN not in self._signature_columns:
            self._signature_columns.append(COLUMN)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        grouped = self.args.train_sampling_strategy == "group_by_length"
        if not grouped and self.rotation is None:
            return super()._get_train_sampler(train_dataset)
        lengths = None
        if grouped:
            # Trainer hands us a copy without the columns the model does not take ("length" among
            # them); it keeps every row in place, so the original's lengths still index it.
            source = self.train_dataset
            if "length" in getattr(source, "column_names", ()):
                lengths = source["length"]
            else:
                lengths = [len(ids) for ids in (train_dataset if train_dataset is not None else source)["input_ids"]]
        if self.rotation is not None:
            return NeutralRotationSampler(self.rotation, lengths, self.args.train_batch_size)
        return LengthBucketSampler(lengths, self.args.train_batch_size)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        current = inputs.pop(COLUMN, None)  # train batches only: evaluation stays the plain forecast
        outputs = model(**inputs)
        total = self.loss_fn(outputs.logits, labels)
        if current is not None:
            total = total + self.current_emotion.loss_sum(current)
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        loss = total / count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # The count is then summed over all processes, while DDP averages their gradients: undo the
            # average as Trainer.compute_loss does (tensor-parallel ranks share a batch, so they count once).
            # Under DataParallel (one process, n_gpu > 1) our loss already covers every GPU's rows.
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, outputs) if return_outputs else loss


def metrics_function(weights: list[float]):
    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(prediction.label_ids, np.argmax(logits, axis=-1), weights)

    return compute


def validation_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One entry per evaluation during training: epoch, step and the validation metrics (argmax)."""
    return [
        {
            "epoch": round(e["epoch"], 3),
            "step": e["step"],
            **{k[5:]: v for k, v in e.items() if k.startswith("eval_") and isinstance(v, float)},
        }
        for e in log_history
        if "eval_loss" in e
    ]
