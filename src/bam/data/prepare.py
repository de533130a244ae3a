"""The training rows a stage sees: the train split, optionally capped and with swapped pairs.

Teachers, the students and teacher-output recording all call :func:`training_examples` with the
same settings, so the rows (and their fingerprint) agree everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bam.config import TrainConfig
from bam.data.examples import Examples
from bam.data.load import load_examples
from bam.errors import BamError
from bam.tasks.spec import TaskSpec

CAP_SEED = 20190520  # fixed: the capped subset is part of the data, the same for every run seed


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


def training_rows(task: TaskSpec, config: TrainConfig) -> Examples:
    """``task``'s training rows as a stage's ``config`` selects them (cap, both orders)."""
    return training_examples(
        task, config.data_dir, config.train_cap.get(task.name), task.name in config.both_orders
    )
