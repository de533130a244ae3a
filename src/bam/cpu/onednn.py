"""Faster forward passes on CPU: every linear layer through oneDNN with packed weights, bias and
GELU fused into the matmul.

Why: a MiniLM-L6 forward pass on this project's 2-core CPU spends three quarters of its time in
``addmm`` (already at the matmul peak) and much of the rest on work around it: copying the bias
into each output before the matmul, and a separate pass of exact GELU over the 4×-wide
intermediate activations. oneDNN's linear primitive applies bias and GELU while the output is
still in cache, and a weight reordered once into oneDNN's blocked layout skips the per-call
packing. This is the rewrite PyTorch's own compiler makes for frozen CPU models
(``torch._inductor``'s mkldnn fusion passes); here it is done without compiling, so variable
batch shapes cost nothing extra. Outputs equal the plain layers' to float rounding (1e-7 on a
random MiniLM, 7e-6 on trained teachers' logits; the same predictions).

Only for inference (no autograd through packed weights) of fp32 models on CPU, and only while
:func:`onednn_linears` is active: the model's own modules, weights and saved files never change.
``BAM_ONEDNN=0`` in the environment turns it off (plain PyTorch layers, as before).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

ROWS_HINT = 2048  # tokens per batch the packed layout is tuned for (batches of 32 × ~64 tokens)


class OneDnnLinear(nn.Module):
    """``activation(x @ W.T + b)`` as one oneDNN primitive with ``W`` packed once."""

    def __init__(self, linear: nn.Linear, activation: str = "none", algorithm: str = "") -> None:
        super().__init__()
        self.plain = (linear,)  # for inputs the packed weights cannot take; a tuple: not a submodule
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, ROWS_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.out_features = linear.out_features
        self.activation, self.algorithm = activation, algorithm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            # An autocast entered inside the model's forward (accelerate wraps it so under mixed
            # precision) hands bf16 activations to fp32-only oneDNN primitives: plain layers then.
            out = self.plain[0](x)
            if self.activation == "gelu":
                return F.gelu(out, approximate="tanh" if self.algorithm == "tanh" else "none")
            return F.relu(out) if self.activation == "relu" else out
        rows = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(
            rows, self.packed, self.bias, self.activation, [], self.algorithm
        )
        return out.view(*x.shape[:-1], self.out_features)


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fused linear ops and they compute what ``F.linear``
    does. They are private to PyTorch (its compiler emits them), so a torch whose ops changed
    falls back to the plain layers instead of failing or giving other numbers."""
    ops = torch.ops.mkldnn
    if not (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    ):
        return False
    generator = torch.Generator().manual_seed(0)  # not torch's global one: seeded runs stay as they were
    linear = nn.utils.skip_init(nn.Linear, 16, 8)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(8, 16, generator=generator))
        linear.bias.copy_(torch.randn(8, generator=generator))
    x = torch.randn(3, 5, 16, generator=generator)
    try:
        with torch.inference_mode():
            fused = OneDnnLinear(linear, "gelu", "none")(x)
            expected = F.gelu(linear(x))
    except RuntimeError:
        return False
    return fused.shape == expected.shape and torch.allclose(fused, expected, atol=1e-5)


def _fusable_activation(module: nn.Module) -> tuple[str, str] | None:
    """oneDNN's (attr, algorithm) for an activation module it can fuse, else None."""
    if isinstance(module, nn.ReLU):
        return "relu", ""
    if isinstance(module, nn.GELU):
        return "gelu", "none" if module.approximate == "none" else "tanh"
    if type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu:
        return "gelu", "none"  # transformers' exact GELU ("gelu" in BERT-style configs)
    return None


def _can_use(model: nn.Module) -> bool:
    params = list(model.parameters())
    return (
        os.environ.get("BAM_ONEDNN", "1") != "0"
        and onednn_available()
        and not model.training
        and bool(params)
        and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    )


@contextmanager
def onednn_linears(model: nn.Module) -> Iterator[bool]:
    """Run ``model``'s linear layers through oneDNN inside the block; yields whether it did.

    A feed-forward block that holds a linear ``dense`` and its ``intermediate_act_fn`` (BERT,
    RoBERTa, ELECTRA, DeBERTa, ...) gets the activation fused; every other ``nn.Linear`` gets its
    bias fused. Does nothing for a model in training mode, on a GPU or in another dtype. The
    original modules are put back on exit, whatever happens inside.
    """
    if not _can_use(model):
        yield False
        return
    swapped: list[tuple[nn.Module, str, nn.Module]] = []

    def swap(parent: nn.Module, name: str, new: nn.Module) -> None:
        swapped.append((parent, name, getattr(parent, name)))
        setattr(parent, name, new)

    try:
        for module in list(model.modules()):
            dense, act = getattr(module, "dense", None), getattr(module, "intermediate_act_fn", None)
            fused = _fusable_activation(act) if isinstance(act, nn.Module) else None
            if type(dense) is nn.Linear and fused is not None:  # not subclasses (LoRA, ...)
                swap(module, "dense", OneDnnLinear(dense, *fused))
                swap(module, "intermediate_act_fn", nn.Identity())
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:  # exactly: a subclass may compute something else
                    swap(parent, name, OneDnnLinear(child))
        yield True
    finally:
        for parent, name, original in reversed(swapped):
            setattr(parent, name, original)
