"""How ``bam run --jobs N`` shares the machine among the stages it trains at once; for the run and
for the plan that tells it beforehand."""

from __future__ import annotations

import os

import torch


def cpu_threads_per_job(jobs: int) -> int:
    """The cores each of ``jobs`` stage processes gets on CPU (at least one)."""
    return max(1, (os.cpu_count() or 1) // jobs)


def phase_threads(jobs: int, stages: int) -> int:
    """CPU threads per process when ``stages`` stages share ``jobs`` processes: fewer stages than
    processes (a lone student) get the idle cores too. One on a GPU, which they share."""
    return 1 if torch.cuda.is_available() else cpu_threads_per_job(min(jobs, max(stages, 1)))
