"""Per-example distillation losses against a target mixed from gold labels and teacher outputs.

Each function returns a tensor of shape ``(batch,)``; the trainer decides how to average. λ is the
weight on the gold label (see :mod:`bam.distill.schedules`). Teacher outputs are treated as
constants: no gradient flows into them.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _check_lambda(lam: float, has_teacher: bool) -> None:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ must be in [0, 1], got {lam}")
    if not has_teacher and lam != 1.0:
        raise ValueError(f"λ={lam} mixes in a teacher, but no teacher outputs were given")


def classification_loss(
    logits: Tensor,
    gold: Tensor,
    teacher_logits: Tensor | None,
    lam: float,
    temperature: float = 1.0,
) -> Tensor:
    """``λ·CE(gold, logits) + (1−λ)·T²·CE(softmax(teacher/T), log_softmax(logits/T))`` per example.

    At T=1 this is the cross-entropy against the mixed distribution ``λ·onehot + (1−λ)·teacher``.
    With T>1 the soft term is scaled by T² (Hinton et al., 2015) so its gradient keeps the same
    magnitude as T changes; the gold term always uses the untempered logits.
    """
    if logits.ndim != 2 or gold.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (B, C) and gold (B,), got {tuple(logits.shape)}, {tuple(gold.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    _check_lambda(lam, teacher_logits is not None)
    loss = lam * F.cross_entropy(logits, gold, reduction="none")
    if teacher_logits is None or lam == 1.0:
        return loss  # skip the soft term entirely, so a NaN teacher can't leak in via 0·NaN
    if teacher_logits.shape != logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} != student {tuple(logits.shape)}")
    t = temperature
    teacher_probs = F.softmax(teacher_logits.detach().to(logits.dtype) / t, dim=-1)
    soft = -(teacher_probs * F.log_softmax(logits / t, dim=-1)).sum(dim=-1)
    return loss + (1.0 - lam) * (t * t) * soft


def regression_loss(pred: Tensor, gold: Tensor, teacher_score: Tensor | None, lam: float) -> Tensor:
    """Squared error against the mixed target ``λ·gold + (1−λ)·teacher`` per example.

    ``pred`` may be ``(B,)`` or a model's ``(B, 1)``; anything else that differs from ``gold`` is
    refused, since broadcasting ``(B, 1)`` against ``(B,)`` would silently give a ``(B, B)`` loss.
    """
    if pred.ndim == 2 and pred.shape[-1] == 1:
        pred = pred.squeeze(-1)
    if pred.shape != gold.shape or pred.ndim != 1:
        raise ValueError(
            f"expected pred and gold of shape (B,), got {tuple(pred.shape)}, {tuple(gold.shape)}"
        )
    _check_lambda(lam, teacher_score is not None)
    target = gold.to(pred.dtype)
    if teacher_score is not None and lam != 1.0:
        if teacher_score.shape != gold.shape:
            raise ValueError(f"teacher scores {tuple(teacher_score.shape)} != gold {tuple(gold.shape)}")
        target = lam * target + (1.0 - lam) * teacher_score.detach().to(pred.dtype)
    return (pred - target) ** 2
