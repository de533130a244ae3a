"""Distillation losses against hand-computed mixed targets (numpy, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bam.distill.losses import classification_loss, regression_loss


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=gen, dtype=torch.float64) * 2
    teacher = torch.randn(5, 3, generator=gen, dtype=torch.float64) * 2
    gold = torch.tensor([0, 2, 1, 1, 0])
    return logits, gold, teacher


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.9])
def test_t1_equals_ce_against_mixed_distribution(batch, lam: float) -> None:
    logits, gold, teacher = batch
    s, t, g = logits.numpy(), teacher.numpy(), gold.numpy()
    target = lam * np.eye(3)[g] + (1 - lam) * _np_softmax(t)
    expected = -(target * np.log(_np_softmax(s))).sum(axis=1)
    got = classification_loss(logits, gold, teacher, lam)
    assert got.shape == (5,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_temperature_scaling_matches_hand_formula(batch) -> None:
    logits, gold, teacher = batch
    s, t, g = logits.numpy(), teacher.numpy(), gold.numpy()
    lam, temp = 0.4, 2.0
    gold_part = -np.log(_np_softmax(s))[np.arange(5), g]
    soft_part = -(_np_softmax(t / temp) * np.log(_np_softmax(s / temp))).sum(axis=1)
    expected = lam * gold_part + (1 - lam) * temp**2 * soft_part
    got = classification_loss(logits, gold, teacher, lam, temperature=temp)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def _soft_grad(logits: torch.Tensor, gold: torch.Tensor, teacher: torch.Tensor, temp: float) -> np.ndarray:
    x = logits.clone().requires_grad_(True)
    classification_loss(x, gold, teacher, 0.0, temperature=temp).sum().backward()
    return x.grad.numpy()


def test_soft_gradient_does_not_vanish_with_temperature(batch) -> None:
    logits, gold, teacher = batch
    s, t = logits.numpy(), teacher.numpy()
    # d/ds of T²·CE(softmax(t/T), log_softmax(s/T)) = T·(softmax(s/T) − softmax(t/T)), which tends
    # to ((s − mean s) − (t − mean t)) / C as T grows: finite, not O(1/T²).
    limit = ((s - s.mean(1, keepdims=True)) - (t - t.mean(1, keepdims=True))) / 3
    np.testing.assert_allclose(_soft_grad(logits, gold, teacher, 2000.0), limit, atol=2e-3)
    for temp in (2.0, 5.0):
        expected = temp * (_np_softmax(s / temp) - _np_softmax(t / temp))
        grad = _soft_grad(logits, gold, teacher, temp)
        np.testing.assert_allclose(grad, expected, rtol=1e-8, atol=1e-12)
        # Without the T² factor the gradient would be T² times smaller.
        unscaled = np.linalg.norm(expected) / temp**2
        assert np.linalg.norm(grad) > 0.3 * np.linalg.norm(_soft_grad(logits, gold, teacher, 1.0))
        assert np.linalg.norm(grad) > 3 * unscaled


def test_lambda_one_is_plain_cross_entropy(batch) -> None:
    logits, gold, teacher = batch
    expected = F.cross_entropy(logits, gold, reduction="none")
    torch.testing.assert_close(classification_loss(logits, gold, None, 1.0), expected)
    torch.testing.assert_close(classification_loss(logits, gold, teacher, 1.0, temperature=3.0), expected)
    # A broken teacher cannot leak in through 0 · NaN.
    nan_teacher = torch.full_like(teacher, float("nan"))
    assert torch.isfinite(classification_loss(logits, gold, nan_teacher, 1.0)).all()


def test_lambda_zero_is_pure_distillation(batch) -> None:
    logits, gold, teacher = batch
    expected = -(_np_softmax(teacher.numpy()) * np.log(_np_softmax(logits.numpy()))).sum(axis=1)
    got = classification_loss(logits, gold, teacher, 0.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    other_gold = (gold + 1) % 3
    torch.testing.assert_close(classification_loss(logits, other_gold, teacher, 0.0), got)


def test_missing_teacher_or_bad_lambda_refused(batch) -> None:
    logits, gold, teacher = batch
    with pytest.raises(ValueError, match="no teacher"):
        classification_loss(logits, gold, None, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_loss(logits, gold, teacher, 1.5)
    with pytest.raises(ValueError, match="teacher logits"):
        classification_loss(logits, gold, teacher[:, :2], 0.5)
    with pytest.raises(ValueError, match="temperature"):
        classification_loss(logits, gold, teacher, 0.5, temperature=0.0)


def test_stable_with_extreme_logits() -> None:
    logits = torch.tensor([[1000.0, -1000.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[-1000.0, 1000.0, 0.0]])
    loss = classification_loss(logits, torch.tensor([1]), teacher, 0.5, temperature=2.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


def test_classification_gradients_reach_student_not_teacher(batch) -> None:
    logits, gold, teacher = batch
    x = logits.clone().requires_grad_(True)
    t = teacher.clone().requires_grad_(True)
    classification_loss(x, gold, t, 0.5, temperature=2.0).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert t.grad is None


def test_regression_mixed_target_by_hand() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    gold = torch.tensor([0.0, 4.0, 3.0], dtype=torch.float64)
    teacher = torch.tensor([2.0, 2.0, 5.0], dtype=torch.float64)
    # λ=0.25: targets 0.25·gold + 0.75·teacher = [1.5, 2.5, 4.5]
    loss = regression_loss(pred, gold, teacher, 0.25)
    np.testing.assert_allclose(loss.detach().numpy(), [0.25, 0.25, 2.25])
    loss.sum().backward()
    np.testing.assert_allclose(pred.grad.numpy(), [-1.0, -1.0, -3.0])  # 2·(pred − target)


def test_regression_lambda_ends_and_shapes() -> None:
    pred = torch.tensor([[1.0], [2.0]])
    gold = torch.tensor([0.0, 4.0])
    teacher = torch.tensor([3.0, 3.0])
    torch.testing.assert_close(regression_loss(pred, gold, None, 1.0), torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(regression_loss(pred, gold, teacher, 0.0), torch.tensor([4.0, 1.0]))
    with pytest.raises(ValueError, match="no teacher"):
        regression_loss(pred, gold, None, 0.5)
    with pytest.raises(ValueError, match="shape"):
        regression_loss(torch.zeros(2, 2), gold, teacher, 0.5)
