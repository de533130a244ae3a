"""Teacher-annealing schedules: λ, the weight on the gold label, as a function of training progress.

BAM mixes the target as ``λ·gold + (1−λ)·teacher``. Annealing λ from 0 to 1 lets the student learn
from its teachers early and from the gold labels by the end, so it can surpass the teachers
(Clark et al., 2019, §3). The other schedules are the paper's baselines and ablations.
"""

from __future__ import annotations

from collections.abc import Callable

from bam.config.train import LAMBDA_SCHEDULES as SCHEDULE_NAMES
from bam.errors import BamError

# fn(step, total_steps, constant) -> λ before clipping to [0, 1].
LambdaFn = Callable[[int, int, float], float]


def _linear(step: int, total_steps: int, constant: float) -> float:
    # Over ALL steps, warm-up included; a zero-length run is treated as already finished.
    return step / total_steps if total_steps > 0 else 1.0


LAMBDA_SCHEDULES: dict[str, LambdaFn] = {
    "linear": _linear,  # teacher annealing: step/T, 0 at the first update, (T−1)/T at the last
    "constant": lambda step, total, constant: constant,  # ablation: fixed mix (default 0.5)
    "gold": lambda step, total, constant: 1.0,  # plain multi-task training
    "teacher": lambda step, total, constant: 0.0,  # pure distillation
}
assert tuple(LAMBDA_SCHEDULES) == SCHEDULE_NAMES, "a schedule the config accepts has no λ function"


def lambda_at(
    schedule: str, step: int, total_steps: int, constant: float = 0.5, horizon: float = 1.0
) -> float:
    """λ (weight on the gold label, in [0, 1]) at ``step`` of ``total_steps`` under ``schedule``.

    ``constant`` is only read by the ``constant`` schedule, where λ equals it. ``horizon`` (in
    (0, 1]) is the fraction of the steps the schedule runs over; after it the student trains on
    gold labels alone (``linear`` with horizon 0.5: λ reaches 1 half-way). 1 is the paper's BAM.
    """
    fn = LAMBDA_SCHEDULES.get(schedule)
    if fn is None:
        valid = ", ".join(sorted(LAMBDA_SCHEDULES))
        raise BamError(f"unknown teacher-annealing schedule {schedule!r} (valid: {valid})")
    if schedule == "constant" and not 0.0 <= constant <= 1.0:
        raise BamError(f"constant teacher-annealing λ must be in [0, 1], got {constant}")
    if not 0.0 < horizon <= 1.0:
        raise BamError(f"teacher-annealing horizon must be in (0, 1], got {horizon}")
    if horizon < 1.0:
        schedule_steps = round(horizon * total_steps)
        if step >= schedule_steps:
            return 1.0
        total_steps = schedule_steps
    return min(1.0, max(0.0, float(fn(step, total_steps, constant))))
