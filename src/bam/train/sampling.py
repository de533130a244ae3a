"""Which batch the loop trains on at each step: static task shares, or shares that tune themselves.

``sampling: static`` (the default) draws tasks ∝ w_τ·|D_τ|^α all through training, w_τ being the
hand-set ``sampling_boost``. ``sampling: adaptive`` multiplies each weight by g(lag_τ)
(:func:`bam.data.batching.lag_factors`: lag_τ / mean lag, clipped to [0.5, 2]), where lag_τ is
how far the student is from its target on a fixed slice of the task's *training* rows
(:func:`bam.distill.lag.normalised_lag`: its loss over the best constant prediction's). The
target is the task's teacher outputs when the student distils, and its gold labels under
``lambda_schedule: gold`` (a multi-task model without teachers then follows its own training
loss on the slice); with ``sampling_lag_target: annealed`` it is what the student trains toward
at the update step, λ·gold + (1 − λ)·teacher, so a student that leaves a weak teacher for the gold
labels as λ rises is not read as lagging (on glue7-cpu the teacher target sent a fifth of the
late batches to RTE, whose teacher is near chance: ``results/glue7-cpu/README.md``).
``sampling_lag_scale: median`` divides by the median lag in place of the mean. No dev row is
read and no task has a constant of its own.

The shares change at fixed steps: every ``sampling_update_every`` steps, or at each epoch's start
(0); the first epoch, before the student has learnt anything, draws the static shares. Each
update is recorded in the progress a checkpoint stores (step, lags, factors, shares), and the
batches from an update on are a pure function of (seed, epoch, update step, recorded factors):
a run resumed after ``kill -9`` replays the unbroken run's batches, re-measuring at an update
step from the restored weights exactly as the unbroken run measured there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast

from bam.data.batching import PlannedBatch, epoch_plan, lag_factors, task_shares
from bam.distill import lambda_at
from bam.distill.lag import normalised_lag, target_distribution
from bam.inference.forward import predict_outputs
from bam.train.batch_loss import TaskData
from bam.train.setup import Run

SLICE_SALT = 0x5A3  # the slice's rows: a choice seeded by (seed, salt), fixed for the whole run


def slice_rows(size: int, rows: int, seed: int) -> np.ndarray:
    """The training rows a task's lag is measured on: ``rows`` of them (all, for a smaller task),
    a seeded choice in row order, the same at every update."""
    if size <= rows:
        return np.arange(size)
    return np.sort(np.random.default_rng([seed, SLICE_SALT]).choice(size, rows, replace=False))


def measure_lags(run: Run, step: int) -> dict[str, float | None]:
    """Each task's normalised lag behind its target on its slice at ``step``, from the weights
    being trained (eval mode: no dropout), the same on every process (the main process's numbers)."""
    config, model = run.config, run.accelerator.unwrap_model(run.model)
    lam = 0.0  # sampling_lag_target teacher: the teacher's outputs alone
    if config.sampling_lag_target == "annealed":
        lam = lambda_at(
            config.lambda_schedule, step, run.total_steps, config.lambda_constant, config.lambda_horizon
        )
    lags: dict[str, float | None] = {}
    for item in run.data:
        rows = slice_rows(len(item.features), config.sampling_slice, config.seed)
        features, head = item.features.take(rows), item.task.head_name
        outputs = predict_outputs(model, features, head, run.pad, config.eval_batch_size, None, run.precision)
        targets = _targets(item, rows, config.lambda_schedule, lam)
        lags[item.task.name] = normalised_lag(outputs, targets, item.task.kind)
    if run.accelerator.num_processes > 1:  # GPUs may differ in the last bits: one plan for all
        values = [np.nan if v is None else v for v in lags.values()]
        shared = broadcast(torch.tensor(values, device=run.accelerator.device), from_process=0).tolist()
        lags = {name: None if np.isnan(v) else v for name, v in zip(lags, shared, strict=True)}
    return lags


def _targets(item: TaskData, rows: np.ndarray, schedule: str, lam: float) -> np.ndarray:
    """What the student is measured against: λ·gold + (1 − λ)·teacher when it distils (λ 0: the
    teacher's outputs alone), else gold."""
    gold = item.gold[rows].numpy()
    regression = item.task.kind == "regression"
    gold_target = gold if regression else target_distribution(None, gold, item.task.num_outputs)
    if item.teacher is None or schedule == "gold":
        return gold_target
    teacher = item.teacher[rows].numpy()
    teacher_target = teacher if regression else target_distribution(teacher, gold, item.task.num_outputs)
    return teacher_target if lam == 0.0 else lam * gold_target + (1.0 - lam) * teacher_target


class Sampler:
    """The planned batch of each step, re-planned when an epoch starts or the shares change."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.adaptive = run.config.sampling == "adaptive"
        self.every = run.config.sampling_update_every or run.per_epoch
        self._key: tuple[int, int] | None = None
        self._plan: list[PlannedBatch] = []
        if self.adaptive and "sampling" not in run.progress:  # a fresh run: the static shares first
            run.progress["sampling"] = [self._record(0, dict.fromkeys(run.shares))]

    def batch(self, step: int) -> PlannedBatch:
        """Step ``step``'s batch (0-based), measuring the lags first when an update is due."""
        run = self.run
        epoch, index = divmod(step, run.per_epoch)
        updates: list[dict[str, Any]] = run.progress.get("sampling", [])
        if self.adaptive and step % self.every == 0 and step > 0 and updates[-1]["step"] < step:
            updates.append(self._record(step, measure_lags(run, step)))
        factors, since = ({}, 0) if not updates else (updates[-1]["factors"], updates[-1]["step"])
        from_step = since - epoch * run.per_epoch if since > epoch * run.per_epoch else 0
        if self._key != (epoch, from_step):
            self._key, self._plan = (epoch, from_step), self._epoch_plan(epoch, from_step, factors)
        return self._plan[index]

    def _epoch_plan(self, epoch: int, from_step: int, factors: dict[str, float]) -> list[PlannedBatch]:
        config = self.run.config
        names = [d.task.name for d in self.run.data]
        boosts = [config.sampling_boost.get(name, 1.0) * factors.get(name, 1.0) for name in names]
        return epoch_plan(
            self.run.lengths,
            config.batch_size,
            config.sampling_alpha,
            config.seed,
            epoch,
            boosts=boosts,
            min_rows=self.run.accelerator.num_processes,
            from_step=from_step,
        )

    def _record(self, step: int, lags: dict[str, float | None]) -> dict[str, Any]:
        """One update as the progress (and the stage record) keeps it: JSON floats, exact on resume."""
        config, sizes = self.run.config, {d.task.name: len(d.features) for d in self.run.data}
        factors = lag_factors(lags, config.sampling_lag_scale)
        boosts = {name: config.sampling_boost.get(name, 1.0) * factors[name] for name in sizes}
        shares = task_shares(sizes, config.sampling_alpha, boosts)
        return {"step": step, "lags": lags, "factors": factors, "shares": shares}
