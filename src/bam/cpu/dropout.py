"""Dropout on CPU with masks drawn by numpy's SFC64 generator instead of torch's ``bernoulli_``.

Why: where PyTorch does not use MKL's random streams (any CPU whose vendor is not Intel, such as
the AMD EPYC machines bam is developed on), ``bernoulli_`` draws one mt19937 number per element
on one thread: 11% of a MiniLM training step, more than all of attention's matmuls. SFC64 gives
64 bits per draw, four 16-bit numbers, in vectorised numpy; a step gets about 10% faster.

The distribution is dropout's: an element is kept with probability ``1 - p`` (``p`` rounded to
a multiple of 1/65536; the kept elements are scaled by the inverse of the rounded keep rate, so
the expectation is exact). Each mask's seed is drawn from torch's default generator, so
``torch.manual_seed`` fixes the masks and a checkpoint (which stores torch's generator) resumes
them. The backward pass keeps a 1-byte mask, not dropout's 4-byte noise tensor. Tensors on a
GPU, and anything not training, go through torch's own dropout and attention unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

try:  # newer transformers (v5 here): attention functions and their masks are pluggable
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
except ImportError:  # older: only the nn.Dropout modules are swapped
    AttentionInterface = None  # type: ignore[misc,assignment]

ATTENTION = "bam_sdpa"  # sdpa, with this file's dropout on the attention probabilities on CPU
_LEVELS = 65536  # a mask element is one uniform 16-bit draw


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A boolean keep-mask with P(keep) = 1 - p (to 1/65536) and the scale of the kept elements."""
    drop_levels = min(round(p * _LEVELS), _LEVELS - 1)  # p just below 1 keeps 1 level, not 0
    seed = int(torch.randint(0, 2**62, (1,)))  # torch's generator: seeded runs and resumes agree
    count = int(np.prod(shape, dtype=np.int64))
    draws = np.random.SFC64(seed).random_raw((count + 3) // 4).view(np.int16)[:count]
    mask = torch.from_numpy(draws).view(shape) >= drop_levels - _LEVELS // 2
    return mask, _LEVELS / (_LEVELS - drop_levels)


class _ScaleByMask(torch.autograd.Function):
    """``x * mask * scale``, saving only the boolean mask for the backward pass. ``torch.where``,
    not ``x * mask``: a product first copies the boolean mask into ``x``'s dtype, a full-size
    copy that was most of a bf16 step's casting time (``scripts/profile_step.py``); the values
    are the same (kept: ``x * scale``; dropped: 0)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.where(mask, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return torch.where(mask, grad, 0.0).mul_(ctx.scale), None, None


def sfc64_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``nn.functional.dropout`` with SFC64 masks for CPU tensors."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    mask, scale = keep_mask(x.shape, p)
    return _ScaleByMask.apply(x, mask, scale)


class CpuDropout(nn.Dropout):
    """An ``nn.Dropout`` (same ``p``, same place in the model) whose CPU masks come from SFC64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sfc64_dropout(x, self.p, self.training)


def sdpa_with_cpu_dropout(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Hugging Face's sdpa attention, except that training on CPU with attention dropout computes
    softmax(QKᵀ·scale + mask)·V itself (torch's math path does the same) with the SFC64 mask."""
    if dropout == 0.0 or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scores = torch.matmul(query, key.transpose(-2, -1)) * (scaling or query.shape[-1] ** -0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # sdpa's mask format: True where a key is visible
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = sfc64_dropout(scores.softmax(dim=-1), dropout, True)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


if AttentionInterface is not None:
    AttentionInterface.register(ATTENTION, sdpa_with_cpu_dropout)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def use_cpu_dropout(model: nn.Module) -> None:
    """Swap every ``nn.Dropout`` in ``model`` for :class:`CpuDropout`, and the sdpa attention of
    each Hugging Face model inside it for :func:`sdpa_with_cpu_dropout` where that model uses the
    attention interface (BERT, RoBERTa, ELECTRA, ...; others keep torch's attention dropout).
    Weights, their names and saved files are unchanged."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, CpuDropout(child.p, child.inplace))
    for module in model.modules():
        if not isinstance(module, PreTrainedModel) or module.config._attn_implementation != "sdpa":
            continue
        can_switch = getattr(module, "_can_set_attn_implementation", None)  # newer transformers only
        if AttentionInterface is not None and can_switch is not None and can_switch():
            module.set_attn_implementation(ATTENTION)
