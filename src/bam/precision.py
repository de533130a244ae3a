"""Which floating-point precision a stage computes in, and why: resolved once, recorded everywhere.

``precision: auto`` (the default) is bf16 where the device has native bf16 matrix units — CUDA
GPUs that support it, CPUs with AVX-512 BF16 or AMX — and fp32 elsewhere. bf16 runs under torch's
autocast: weights, gradients and optimizer state stay fp32, and only the matmuls and what
autocast lists run in bf16; losses are computed in fp32. bam enters the autocast itself, per
stage: accelerate's mixed precision is one setting per process, and a run trains stages of
several precisions in one. On this project's 2-core CPUs (AVX-512 BF16 / AMX) a MiniLM-L6
training step is about twice as fast in bf16 as in fp32; on a CPU without bf16 units autocast
emulates it and is slower than fp32, so ``auto`` stays fp32 there. fp16 is for GPUs, with loss
scaling (``torch.amp.GradScaler``). fp32 matmuls use TF32 on GPUs that have it.

Detection reads the CPU's feature flags (``/proc/cpuinfo`` on Linux); where they cannot be read,
``auto`` is fp32 and says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bam.config.train import PRECISIONS
from bam.cpu.machine import cpu_flags
from bam.errors import BamError

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16 / AMX; Arm's BF16 ("bf16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The precision that runs (``fp32``, ``bf16`` or ``fp16``) and why it was chosen."""

    name: str
    reason: str

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def record(self) -> dict[str, str]:
        return {"precision": self.name, "precision_reason": self.reason}


FP32 = Precision("fp32", "default")


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 matmuls in hardware, and the evidence."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} has bf16 tensor cores"
        return False, f"{name} has no native bf16"
    flags = cpu_flags()
    if not flags:
        return False, "the CPU's feature flags could not be read"
    found = [flag for flag in CPU_BF16_FLAGS if flag in flags]
    if found:
        return True, f"the CPU has {'/'.join(found).upper()}"
    return False, "the CPU has no AVX-512 BF16, AMX or Arm BF16 units"


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """``requested`` (one of :data:`PRECISIONS`) as it will run on ``device``, with the reason.

    Under ``accelerate launch --mixed_precision X`` (``ACCELERATE_MIXED_PRECISION``), ``auto``
    follows the launcher; an explicit setting wins over it."""
    if requested not in PRECISIONS:
        raise BamError(f"precision: {requested!r} is not one of {', '.join(PRECISIONS)}")
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if requested == "auto" and launcher in ("bf16", "fp16"):
        requested, why = launcher, f"ACCELERATE_MIXED_PRECISION={launcher}"
    elif requested == "auto":
        native, evidence = native_bf16(device)
        return Precision("bf16" if native else "fp32", f"auto: {evidence}")
    else:
        why = "set in the config"
    if requested == "fp16" and device.type != "cuda":
        raise BamError("precision: fp16 needs a GPU (on CPU use bf16 or fp32)")
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BamError(f"precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    return Precision(requested, why)


def inference_precision(trained: str | None, device: torch.device) -> Precision:
    """The precision to run a trained model in: the one it trained in (``bam_model.json``'s
    ``precision``; none recorded: fp32), where ``device`` computes it natively; else fp32."""
    if trained not in DTYPES:
        return Precision("fp32", "trained in fp32" if trained == "fp32" else "none recorded with the model")
    if trained == "fp16" and device.type != "cuda":
        return Precision("fp32", "trained in fp16; no fp16 on CPU")
    native, evidence = native_bf16(device) if trained == "bf16" else (True, "a GPU")
    if not native:
        return Precision("fp32", f"trained in {trained}, but {evidence}")
    return Precision(trained, f"trained in {trained}; {evidence}")


def model_precision(meta: Mapping[str, Any], device: torch.device, requested: str | None = None) -> Precision:
    """The precision to run a saved model in (evaluate, teacher outputs, predict, submit): the one
    its ``bam_model.json`` records (:func:`inference_precision`), unless ``requested`` names one of
    :data:`PRECISIONS`, resolved as training resolves it (``auto``: bf16 only on bf16 units)."""
    if requested is None:
        trained = meta.get("precision")
        return inference_precision(trained if isinstance(trained, str) else None, device)
    chosen = resolve_precision(requested, device)
    return chosen if requested == "auto" else Precision(chosen.name, "asked for")


def allow_tf32() -> None:
    """fp32 matmuls on GPUs with TF32 units (Ampere and later) use them: ~8× the fp32 rate."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """Forward passes in ``precision`` (inference: evaluation, teacher outputs, predict); fp32 runs
    with autocast explicitly off, so an outer autocast (accelerate's) cannot change it."""
    dtype = DTYPES.get(precision.name)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        yield
