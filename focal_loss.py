"""Focal loss for imbalanced classification (Lin et al., 2017).

For logits z, target y and p_i = softmax(z_i)[y_i]:

    loss_i = -alpha[y_i] * (1 - p_i) ** gamma * log p_i

`alpha` holds one weight per class (None = all ones) and `gamma` >= 0 focuses the loss on hard
examples; with gamma 0 and no alpha it is cross entropy. The loss is computed from
`log_softmax` in float32, so it stays finite for fp16 inputs and extreme logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn


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
        # (1 - p) computed as -expm1(log p) keeps precision when p is close to 1.
        loss = -torch.pow(-torch.expm1(log_p), self.gamma) * log_p if self.gamma else -log_p
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[target]
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
