"""FocalLoss: the documented formula, its limits and its numerical stability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emotion_predictor.training.focal_loss import FocalLoss


def reference_focal(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """The documented formula, per row, in float64."""
    p = torch.softmax(logits.double(), -1)[torch.arange(len(target)), target]
    return -((1 - p) ** gamma) * torch.log(p)


def test_gamma_zero_without_alpha_equals_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(32, 7), torch.randint(0, 7, (32,))
    assert torch.allclose(FocalLoss(gamma=0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_matches_the_formula_with_alpha_and_gamma():
    torch.manual_seed(1)
    logits, target = torch.randn(16, 7), torch.randint(0, 7, (16,))
    alpha = torch.tensor([0.2, 1.0, 3.0, 5.0, 0.7, 1.5, 2.0])
    p = torch.softmax(logits, -1)[torch.arange(16), target]
    expected = (-alpha[target] * (1 - p) ** 3 * torch.log(p)).mean()
    assert torch.allclose(FocalLoss(alpha=alpha, gamma=3)(logits, target), expected, atol=1e-6)


def test_alpha_weights_scale_each_class():
    logits = torch.zeros(2, 7)
    target = torch.tensor([0, 3])
    per_row = FocalLoss(gamma=2, reduction="none")(logits, target)
    weighted = FocalLoss(alpha=[1, 1, 1, 10, 1, 1, 1], gamma=2, reduction="none")(logits, target)
    assert torch.allclose(weighted, per_row * torch.tensor([1.0, 10.0]))
    assert torch.allclose(FocalLoss(gamma=2, reduction="sum")(logits, target), per_row.sum())


def test_gamma_down_weights_easy_examples():
    easy = torch.tensor([[6.0, 0, 0, 0, 0, 0, 0]])
    hard = torch.tensor([[0.0, 0, 0, 0, 0, 0, 0]])
    target = torch.tensor([0])
    ratio_ce = F.cross_entropy(easy, target) / F.cross_entropy(hard, target)
    ratio_focal = FocalLoss(gamma=2)(easy, target) / FocalLoss(gamma=2)(hard, target)
    assert ratio_focal < ratio_ce / 100


def test_finite_loss_and_gradients_for_extreme_logits():
    logits = torch.tensor([[1e4, -1e4, 0, 0, 0, 0, 0], [-1e4, 1e4, 0, 0, 0, 0, 0]], requires_grad=True)
    target = torch.tensor([1, 1])
    loss = FocalLoss(alpha=[1.0] * 7, gamma=8)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1e3
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9, 1.0, 2.0, 8.0])
def test_gradients_stay_finite_and_exact_where_p_rounds_to_one(gamma):
    # A margin of 20 makes p exactly 1 in float32 (not in float64), a margin of 1e4 in both; the last
    # row is an ordinary one.
    logits = torch.tensor([[20.0, 0, 0, 0, 0, 0, 0], [1e4, 0, 0, 0, 0, 0, 0], [1.0, 0.5, -0.3, 0.2, 0, 0.1, -1]])
    target = torch.tensor([0, 0, 2])
    ours = logits.clone().requires_grad_()
    loss = FocalLoss(gamma=gamma, reduction="sum")(ours, target)
    loss.backward()
    assert torch.isfinite(ours.grad).all()
    assert loss.item() == pytest.approx(reference_focal(logits, target, gamma).sum().item(), rel=1e-5)
    exact = logits[[0, 2]].double().requires_grad_()
    reference_focal(exact, target[[0, 2]], gamma).sum().backward()
    # Where p is 1 the gradient is the formula's limit, 0 (float64: about 1e-12 at margin 20).
    assert torch.allclose(ours.grad[[0, 2]].double(), exact.grad, atol=1e-6)
    assert torch.equal(ours.grad[1], torch.zeros(7))


def test_float16_logits_give_the_float32_result():
    torch.manual_seed(2)
    half = (torch.randn(8, 7) * 5).half()
    target = torch.randint(0, 7, (8,))
    loss = FocalLoss(gamma=8)(half, target)
    assert loss.dtype == torch.float32
    # Computed in float16, softmax and the 8th power would be off by ~1e-3 relative.
    expected = reference_focal(half, target, 8).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
