"""Focal loss for imbalanced classification (Lin et al., 2017).

For logits z, target y and p_i = softmax(z_i)[y_i]:

    loss_i = -alpha[y_i] * (1 - p_i) ** gamma * log p_i

`alpha` holds one weight per class (None = all ones) and `gamma` >= 0 focuses the loss on hard
examples; with gamma 0 and no alpha it is cross entropy. The loss is computed from
`log_softmax` in float32, so it stays finite for fp16 inputs and extreme logits, and its gradient
stays finite for every gamma >= 0, including 0 < gamma < 1 where p rounds to 1.

`class_weights_for` turns the `class_weights` key (a rule or a list) into the weights `alpha`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from emotion_predictor.evaluation.metrics import balanced_class_weights
from emotion_predictor.labels import NUM_LABELS


class FocalLoss(nn.Module):
    """Focal loss with per-class `alpha` weights; `reduction` is "mean", "sum" or "none"."""

    def __init__(
        self,
        alpha: Sequence[float] | torch.Tensor | None = None,
        gamma: float = 2.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.gamma = float(gamma)
        self.reduction = reduction
        alpha_tensor = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        self.register_buffer("alpha", alpha_tensor)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits.float(), dim=-1).gather(1, target.long().unsqueeze(1)).squeeze(1)
        loss = -self.focus(log_p) * log_p if self.gamma else -log_p
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[target]
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def focus(self, log_p: torch.Tensor) -> torch.Tensor:
        """(1 - p) ** gamma, with finite gradients for any gamma > 0."""
        # -expm1(log p) keeps the precision of 1 - p when p is close to 1.
        one_minus_p = -torch.expm1(log_p)
        # Where p rounds to 1 (a logit margin of ~17 in float32), d/dx x**gamma is infinite at x = 0 for
        # gamma < 1 and backward gives 0 * inf = NaN. Below the smallest normal float the factor is
        # taken as its limit, 0, and the clamp keeps the unused branch's gradient finite.
        tiny = torch.finfo(one_minus_p.dtype).tiny
        return torch.where(one_minus_p < tiny, 0.0, one_minus_p.clamp_min(tiny).pow(self.gamma))


def class_weights_for(rule: str | list[float], train_labels: np.ndarray) -> list[float]:
    """Per-class weights under `rule` (the `class_weights` key): 'balanced' gives n / (k * count_c)
    over the classes present in train, 'sqrt_balanced' their square roots, 'none' ones, a list itself."""
    if isinstance(rule, list):
        return [float(w) for w in rule]
    if rule == "none":
        return [1.0] * NUM_LABELS
    weights = balanced_class_weights(train_labels)
    return [float(np.sqrt(w)) for w in weights] if rule == "sqrt_balanced" else weights
