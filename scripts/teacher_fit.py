"""How closely each teacher's recorded outputs on its own training rows follow the gold labels.

A teacher that had memorised its training set would hand the student targets equal to the gold
labels, and distilling from it would add nothing; out-of-fold outputs (`teacher_folds`) exist for
that case. This prints, for every teacher stage of a run folder that recorded outputs, its score
on the rows it was trained on (the task's dev metric) next to its dev score, and for cross-fitted
outputs their score on every training row (each row labelled by the teacher that never saw it):

    python scripts/teacher_fit.py runs/glue5-cpu/stages
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.special import softmax

from bam.config.train import TrainConfig, build_dataclass
from bam.data.prepare import training_rows
from bam.distill.store import load_outputs_for
from bam.errors import BamError
from bam.tasks import get_task
from bam.tasks.metrics import compute_metrics


def _score(task, outputs: np.ndarray, labels: np.ndarray) -> tuple[float, str]:
    """The task's dev metric of ``outputs`` against ``labels``, and the mean probability of gold."""
    if outputs.ndim == 1:
        return compute_metrics(task, outputs, labels)[task.primary_metric], "–"
    probs = softmax(outputs, axis=1)
    fit = compute_metrics(task, probs.argmax(axis=1), labels)[task.primary_metric]
    return fit, f"{probs[np.arange(len(labels)), labels].mean():.3f}"


def fit_lines(stage: Path) -> list[str]:
    """Table rows for a teacher stage: its outputs on its own training rows and, next to fold
    teacher 0, the cross-fitted outputs on every row (each from the teacher that held it out)."""
    config = build_dataclass(TrainConfig, json.loads((stage / "train_config.json").read_text()), stage.name)
    [task_name] = config.tasks
    task = get_task(task_name)
    dev = json.loads((stage / "train_done.json").read_text())["dev"]["scores"][task.name]
    lines = []
    for pattern, rows in (
        ("outputs-*.safetensors", training_rows(task, config)),
        ("cross-fit-*.safetensors", training_rows(task, replace(config, cv_folds=0, cv_holdout=0))),
    ):
        for path in sorted(stage.glob(pattern)):
            try:
                outputs = load_outputs_for(path, rows)
            except BamError:
                continue  # recorded for other rows (another cap or order, or a fold's rows)
            fit, gold_prob = _score(task, outputs, rows.labels)
            name = stage.name if pattern.startswith("outputs") else f"{stage.name} (cross-fitted, all folds)"
            lines.append(f"| {name} | {task.name} | {len(rows):,} | {fit:.2f} | {dev:.2f} | {gold_prob} |")
            break
    return lines


def main(stages: Path) -> None:
    print("| teacher stage | task | training rows | score on them | dev score | mean p(gold) on them |")
    print("|---|---|---:|---:|---:|---:|")
    for stage in sorted(stages.glob("teacher-*")):
        if (stage / "train_done.json").is_file():
            for line in fit_lines(stage):
                print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
