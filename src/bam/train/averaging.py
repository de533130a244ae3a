"""Polyak averaging: an exponential moving average of the weights, kept in place of the last ones.

Why: a small GLUE dev set (RTE 277 rows, MRPC 408) scores a fine-tuned model differently from one
step to the next; the average of the weights over the last ~1/(1 - decay) steps is a cheap ensemble
over time that costs one copy of the model and one ``lerp`` per parameter per step. The paper does
not average; with ``ema_decay: 0`` (the default) bam does not either.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

AVERAGE_PREFIX = "average."  # the average's tensors in a checkpoint, beside "model." and "optimizer."


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """torch's ``AveragedModel`` over ``model`` (its first update copies the weights), or None at 0."""
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)


def average_tensors(average: AveragedModel | None) -> dict[str, torch.Tensor]:
    """The average's state (weights and update count) as checkpoint tensors."""
    if average is None:
        return {}
    state = average.state_dict()
    return {AVERAGE_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_average(average: AveragedModel | None, tensors: dict[str, torch.Tensor]) -> None:
    if average is not None:
        state = {k[len(AVERAGE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(AVERAGE_PREFIX)}
        average.load_state_dict(state)
