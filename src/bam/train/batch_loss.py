"""What the training loop feeds on: each task's rows with their targets, and one mixed batch's loss.

A batch mixes tasks; each task's rows go through its own head and its own loss (cross-entropy or
squared error against ``λ·gold + (1−λ)·teacher``, :mod:`bam.distill.losses`), and the losses are
summed per example so that the loop can scale the sum to the mean over the whole batch (over every
process's share of it, under DDP).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bam.config.train import TrainConfig
from bam.data.batching import collate
from bam.data.examples import Examples
from bam.data.features import Features, load_or_tokenize
from bam.distill import average_teachers, classification_loss, load_outputs_for, regression_loss
from bam.errors import BamError
from bam.model import BamModel
from bam.tasks.spec import TaskSpec


@dataclass
class TaskData:
    """One task's training rows: tokens, gold targets and (optionally) teacher outputs."""

    task: TaskSpec
    features: Features
    gold: torch.Tensor  # int64 label ids or float32 scores
    teacher: torch.Tensor | None  # the teachers' averaged logits or scores, row for row


def load_task_data(
    task: TaskSpec, examples: Examples, config: TrainConfig, tokenizer, cache_dir: Path | None
) -> TaskData:
    """``examples`` tokenized (cached), with their gold targets and the average of the recorded
    teacher outputs that ``config`` names for the task; a distilling schedule without them is refused."""
    files = config.teacher_outputs.get(task.name)
    if not files and config.lambda_schedule != "gold":
        raise BamError(
            f"lambda_schedule {config.lambda_schedule!r} needs teacher outputs for task {task.name} "
            f"(teacher_outputs.{task.name}=[FILE]) or lambda_schedule=gold"
        )
    teacher = None
    if files:
        outputs = [load_outputs_for(path, examples) for path in files]
        teacher = torch.from_numpy(
            average_teachers(outputs, "score" if task.kind == "regression" else "logits")
        )
    features = load_or_tokenize(examples, tokenizer, config.max_length, cache_dir)
    assert examples.labels is not None
    gold = torch.from_numpy(np.asarray(examples.labels))
    return TaskData(task, features, gold, teacher)


def batch_loss(
    model: BamModel,
    data: list[TaskData],
    task_ids: np.ndarray,
    rows: np.ndarray,
    lam: float,
    config: TrainConfig,
    pad_id: int,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, tuple[float, int]]]:
    """Sum of per-example losses of this process's share of a batch, and per-task sums."""
    inputs = {k: v.to(device) for k, v in collate([d.features for d in data], task_ids, rows, pad_id).items()}
    positions = {int(t): np.flatnonzero(task_ids == t) for t in np.unique(task_ids)}  # in the batch
    groups = {data[t].task.name: torch.from_numpy(where).to(device) for t, where in positions.items()}
    outputs = model(**inputs, groups=groups)
    sums, counts = [], {}
    for t, where in positions.items():
        item = data[t]
        output = outputs[item.task.name].float()  # the loss in fp32, whatever precision the forward ran in
        task_rows = torch.from_numpy(rows[where])
        gold = item.gold[task_rows].to(device)
        teacher = None if item.teacher is None else item.teacher[task_rows].to(device)
        if item.task.kind == "regression":
            losses = regression_loss(output, gold, teacher, lam)
        else:
            losses = classification_loss(output, gold, teacher, lam, config.temperature)
        sums.append(losses.sum())
        counts[item.task.name] = len(task_rows)
    stacked = torch.stack(sums)
    values = stacked.detach().tolist()  # one device sync per step, not one per task
    per_task = {name: (value, count) for (name, count), value in zip(counts.items(), values, strict=True)}
    return stacked.sum(), per_task
