"""Which examples go into which batch: task sampling, length grouping and padding.

An epoch's plan is a pure function of (seed, epoch), so a resumed run replays exactly the batches
an uninterrupted one would have seen. Each example slot of an epoch draws its task with
probability ∝ |D_τ|^α; each task serves its rows from shuffled passes over its data. Rows are then
grouped by length (sorted inside chunks of ``group_batches`` batches) so padding stays small, and
the batches are shuffled, so each batch mixes tasks of similar length.

With ``sampling: adaptive`` the weights w_τ also carry :func:`lag_factors`, and an epoch may be
planned again from a step inside it (``from_step``) with the factors then in force: still a pure
function, of (seed, epoch, from_step, factors), the factors being part of a run's recorded state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from bam.data.features import Features

Task = TypeVar("Task")  # a task's name, or its index in a run's list of tasks


def task_shares(
    sizes: dict[Task, int], alpha: float, boosts: dict[Task, float] | None = None
) -> dict[Task, float]:
    """Sampling probability of each task: w_τ·|D_τ|^α normalised (α=0 uniform, α=1 proportional).

    ``boosts`` gives w_τ (1 for a task it does not name): a task that loses to the others in the
    shared encoder can be drawn more often without changing α for all of them.
    """
    boosts = boosts or {}
    weights = {task: boosts.get(task, 1.0) * float(size) ** alpha for task, size in sizes.items()}
    total = sum(weights.values())
    return {task: weight / total for task, weight in weights.items()}


# g(lag) is clipped to this range: a task is drawn at most this much less or more often than
# |D|^α alone would draw it, so one noisy measure can neither starve a task nor swamp the others.
LAG_FACTOR_RANGE = (0.5, 2.0)


def lag_factors(lags: Mapping[Task, float | None], scale: str = "mean") -> dict[Task, float]:
    """g(lag_τ) = lag_τ / (mean or median lag), clipped to :data:`LAG_FACTOR_RANGE`: the sampling
    weight factor of each task under ``sampling: adaptive``.

    The same function for every task and no per-task constant: permuting the tasks permutes the
    factors, equal lags give 1 everywhere (the static shares), and a task that lags more than the
    others is drawn more. A task with no measure (None) or a scale of 0 gives the factor 1. Under
    the mean one task far behind the rest pulls every other factor to the floor; the median
    keeps comparing the others.
    """
    measured = [lag for lag in lags.values() if lag is not None]
    if not measured:
        return dict.fromkeys(lags, 1.0)
    middle = float(np.median(measured)) if scale == "median" else sum(measured) / len(measured)
    low, high = LAG_FACTOR_RANGE
    if middle <= 0:
        return dict.fromkeys(lags, 1.0)
    return {task: 1.0 if lag is None else min(max(lag / middle, low), high) for task, lag in lags.items()}


@dataclass(frozen=True)
class PlannedBatch:
    task_ids: np.ndarray  # index of each example's task
    rows: np.ndarray  # each example's row in its task's data


def _task_stream(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` rows from consecutive shuffled passes over a task of ``size`` rows."""
    passes = -(-count // size)
    return np.concatenate([rng.permutation(size) for _ in range(passes)])[:count]


def epoch_plan(
    lengths: list[np.ndarray],
    batch_size: int,
    alpha: float,
    seed: int,
    epoch: int,
    group_batches: int = 50,
    boosts: list[float] | None = None,
    min_rows: int = 1,
    from_step: int = 0,
) -> list[PlannedBatch]:
    """The batches of one epoch: as many examples as all tasks together, tasks drawn ∝ w·|D|^α.

    A last batch with fewer than ``min_rows`` rows joins the one before it: data-parallel
    training splits each batch across its processes, and none may be left without a row.
    ``from_step`` (a step inside the epoch, 0: its start) draws another plan of the same length,
    for the epoch's steps from there on when the weights change inside it.
    """
    rng = np.random.default_rng([seed, epoch] if from_step == 0 else [seed, epoch, from_step])
    sizes = np.array([len(x) for x in lengths], dtype=np.int64)
    total = int(sizes.sum())
    by_index = dict(enumerate(boosts)) if boosts else None
    shares = np.array(list(task_shares(dict(enumerate(sizes)), alpha, by_index).values()))
    counts = rng.multinomial(total, shares) if len(sizes) > 1 else sizes
    task_ids = np.concatenate([np.full(c, t, dtype=np.int64) for t, c in enumerate(counts)])
    rows = np.concatenate([_task_stream(int(sizes[t]), int(c), rng) for t, c in enumerate(counts)])
    order = rng.permutation(total)
    task_ids, rows = task_ids[order], rows[order]
    example_lengths = np.array([lengths[t][r] for t, r in zip(task_ids, rows, strict=True)])
    batches = []
    chunk = batch_size * group_batches
    for start in range(0, total, chunk):
        part = slice(start, start + chunk)
        by_length = np.argsort(-example_lengths[part], kind="stable")
        chunk_tasks, chunk_rows = task_ids[part][by_length], rows[part][by_length]
        for b in range(0, len(by_length), batch_size):
            batches.append(PlannedBatch(chunk_tasks[b : b + batch_size], chunk_rows[b : b + batch_size]))
    if len(batches) > 1 and len(batches[-1].rows) < min_rows:
        tail, last = batches.pop(), batches.pop()
        merged_tasks = np.concatenate([last.task_ids, tail.task_ids])
        batches.append(PlannedBatch(merged_tasks, np.concatenate([last.rows, tail.rows])))
    return [batches[i] for i in rng.permutation(len(batches))]


def steps_per_epoch(sizes: list[int], batch_size: int, group_batches: int = 50, min_rows: int = 1) -> int:
    """Number of batches :func:`epoch_plan` yields (full chunks plus a shorter last one)."""
    total = sum(sizes)
    chunk = batch_size * group_batches
    full, rest = divmod(total, chunk)
    steps = full * group_batches + -(-rest // batch_size)
    short_tail = 0 < total % batch_size < min_rows
    return steps - 1 if steps > 1 and short_tail else steps


def inference_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Rows sorted longest first and cut into batches: padding is minimal and peak memory known early."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(
    features: list[Features], task_ids: np.ndarray, rows: np.ndarray, pad_id: int
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest row (dynamic padding)."""
    pieces = [features[t].row(int(r)) for t, r in zip(task_ids, rows, strict=True)]
    width = max(len(ids) for ids, _ in pieces)
    input_ids = np.full((len(pieces), width), pad_id, dtype=np.int64)
    token_types = np.zeros((len(pieces), width), dtype=np.int64)
    mask = np.zeros((len(pieces), width), dtype=np.int64)
    for i, (ids, types) in enumerate(pieces):
        input_ids[i, : len(ids)] = ids
        token_types[i, : len(ids)] = types
        mask[i, : len(ids)] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(token_types),
    }
