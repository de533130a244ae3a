"""The training rows a stage sees: the train split, optionally capped and with swapped pairs.

Teachers, the students and teacher-output recording all call :func:`training_rows` with the
same settings, so the rows (and their fingerprint) agree everywhere. A cross-fitting teacher
(``cv_folds``) sees the same rows less one fold of :func:`training_folds`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bam.config.train import TrainConfig
from bam.data.examples import Examples
from bam.data.load import load_examples
from bam.errors import BamError
from bam.tasks.spec import TaskSpec

CAP_SEED = 20190520  # fixed: the capped subset is part of the data, the same for every run seed
FOLD_SEED = 20190521  # fixed: cross-fitting folds too, so every run seed holds out the same rows


def capped(examples: Examples, cap: int | None) -> Examples:
    """A fixed random subset of ``cap`` rows, kept in file order."""
    if cap is None or cap >= len(examples):
        return examples
    if cap <= 0:
        raise BamError(f"train_cap.{examples.task} must be positive, got {cap}")
    rng = np.random.default_rng(CAP_SEED)
    keep = np.sort(rng.choice(len(examples), size=cap, replace=False))
    return examples.subset(keep)


def with_both_orders(examples: Examples) -> Examples:
    """Append every pair again with its two texts swapped (the paper does this for MRPC, STS-B)."""
    if len(examples.texts) != 2:
        raise BamError(f"both_orders: task {examples.task} has a single text column, not a pair")
    first, second = examples.texts
    labels = None if examples.labels is None else np.concatenate([examples.labels, examples.labels])
    return Examples(
        task=examples.task,
        split=examples.split,
        texts=(first + second, second + first),
        labels=labels,
        ids=examples.ids + examples.ids,
        source=examples.source,
    )


def training_examples(
    task: TaskSpec, data_dir: str | Path | None, cap: int | None = None, both_orders: bool = False
) -> Examples:
    examples = capped(load_examples(task, "train", data_dir), cap)
    if examples.labels is None:
        raise BamError(f"{examples.source}: the training split of {task.name} has no labels")
    return with_both_orders(examples) if both_orders else examples


def fold_assignment(rows: int, folds: int) -> np.ndarray:
    """Fold of each of ``rows`` rows: a fixed permutation dealt round-robin, so sizes differ by ≤ 1."""
    order = np.random.default_rng(FOLD_SEED).permutation(rows)
    assignment = np.empty(rows, dtype=np.int64)
    assignment[order] = np.arange(rows) % folds
    return assignment


def _rows_and_folds(task: TaskSpec, config: TrainConfig, folds: int) -> tuple[Examples, np.ndarray]:
    """Every training row ``config`` selects (no fold held out), and each row's fold (0 folds: one).

    Folds are dealt after the cap and before the swapped copies, which share their pair's fold: a
    teacher that never saw (a, b) never saw (b, a) either."""
    examples = training_examples(task, config.data_dir, config.train_cap.get(task.name))
    if folds > len(examples):  # an empty fold: a teacher that labels nothing
        raise BamError(f"{task.name}: {folds} folds (teacher_folds) but only {len(examples)} training rows")
    assignment = fold_assignment(len(examples), max(folds, 1))
    if task.name in config.both_orders:
        examples = with_both_orders(examples)
        assignment = np.concatenate([assignment, assignment])
    return examples, assignment


def training_folds(task: TaskSpec, config: TrainConfig, folds: int) -> np.ndarray:
    """The fold (0 .. ``folds`` - 1) of each of ``task``'s training rows under ``config``, in the
    order of :func:`training_rows` with no fold held out (``cv_folds`` 0)."""
    if folds < 2:
        raise BamError(f"cross-fitting needs at least 2 folds, got {folds}")
    return _rows_and_folds(task, config, folds)[1]


def training_rows(task: TaskSpec, config: TrainConfig) -> Examples:
    """``task``'s training rows as a stage's ``config`` selects them (cap, both orders), less fold
    ``cv_holdout`` of ``cv_folds`` for a cross-fitting teacher."""
    examples, assignment = _rows_and_folds(task, config, config.cv_folds)
    if not config.cv_folds:
        return examples
    return examples.subset(np.flatnonzero(assignment != config.cv_holdout))
