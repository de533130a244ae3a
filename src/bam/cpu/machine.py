"""The machine a stage trains on: its name for provenance, and whether its CPUs are already busy.

On CPU, training threads that share cores with another job do not just halve their speed: each
step waits on OpenMP barriers for the slowest thread, and single steps were measured 4–40× slower
here. Nothing else tells the user, so a run warns before it starts.
"""

from __future__ import annotations

import logging
import platform
import time
from functools import lru_cache
from pathlib import Path

import psutil
import torch

log = logging.getLogger("bam")

BUSY_SHARE = 0.3  # other processes using more of the machine than this: warn


def _cpuinfo() -> list[tuple[str, str]]:
    """``(key, value)`` lines of Linux's ``/proc/cpuinfo`` (the kernel's, on every Linux machine);
    none elsewhere or when unreadable, and callers fall back."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        lines = (
            cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines() if cpuinfo.is_file() else []
        )
    except OSError:
        return []
    pairs = (line.partition(":") for line in lines)
    return [(key.strip(), value.strip()) for key, sep, value in pairs if sep]


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` knows: for provenance lines."""
    models = [value for key, value in _cpuinfo() if key == "model name"]
    return models[0] if models else (platform.processor() or "CPU")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty where unreadable."""
    return frozenset(
        flag for key, value in _cpuinfo() if key in ("flags", "Features") for flag in value.split()
    )


def hardware(device: torch.device, processes: int) -> str:
    """What trained a stage: kept in ``train_done.json``, since seeds may run on different machines.

    On CPU it names the vector unit torch's kernels use (AVX2, AVX512, ...): two machines that
    both call themselves "AMD EPYC" were seen here, one with AVX-512 BF16 and one with AVX2 only,
    and their speeds and chosen precisions differ."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        vector_unit = torch.backends.cpu.get_cpu_capability()
        name = f"{cpu_name()} ({vector_unit}, {threads} thread{'s' if threads > 1 else ''})"
    return f"{processes} × {name}; torch {torch.__version__}"


def cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (``psutil``; 0, 0 where unknown).

    Idle time and time waiting for I/O count as not busy; the rest (user, system, interrupts,
    steal, guests) counts as busy."""
    try:
        times = psutil.cpu_times()
    except (OSError, RuntimeError, psutil.Error):
        return 0.0, 0.0
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def busy_share(seconds: float) -> float:
    """The share of the machine's CPU time used over the next ``seconds`` (0 where unknown)."""
    busy0, total0 = cpu_seconds()
    time.sleep(seconds)
    busy1, total1 = cpu_seconds()
    if total1 <= total0:
        return 0.0
    return min(1.0, max(0.0, (busy1 - busy0) / (total1 - total0)))  # float sums can pass 1


def warn_if_cpus_busy(seconds: float = 0.5) -> None:
    """Before training on CPU, look whether other processes already keep the cores busy."""
    if torch.cuda.is_available():
        return
    share = busy_share(seconds)
    if share > BUSY_SHARE:
        cores = psutil.cpu_count() or 1
        log.warning(
            "other processes are using %.1f of this machine's %d cores: training beside them runs "
            "several times slower (its threads wait for each other); see `top`",
            share * cores,
            cores,
        )
