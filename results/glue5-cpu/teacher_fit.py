"""How closely each teacher's recorded outputs on its own training rows follow the gold labels.

A teacher that had memorised its training set would hand the student targets equal to the gold
labels, and distilling from it would add nothing; out-of-fold outputs (`teacher_folds`) exist for
that case. This prints, for every teacher stage of a run folder that recorded outputs, its score
on the rows it was trained on (the task's dev metric) next to its dev score:

    python results/glue5-cpu/teacher_fit.py runs/glue5-cpu/stages
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.special import softmax

from bam.config import TrainConfig, build_dataclass
from bam.data.prepare import training_rows
from bam.distill.store import load_outputs_for
from bam.errors import BamError
from bam.tasks import get_task
from bam.tasks.metrics import compute_metrics


def fit_line(stage: Path) -> str | None:
    """One table row for a teacher stage, or None when it recorded no outputs for its own rows."""
    config = build_dataclass(TrainConfig, json.loads((stage / "train_config.json").read_text()), stage.name)
    [task_name] = config.tasks
    task = get_task(task_name)
    rows = training_rows(task, config)
    dev = json.loads((stage / "train_done.json").read_text())["dev"]["scores"][task.name]
    for path in sorted(stage.glob("outputs-*.safetensors")):
        try:
            outputs = load_outputs_for(path, rows)
        except BamError:
            continue  # recorded for other rows (another cap or order)
        if outputs.ndim == 1:
            fit = compute_metrics(task, outputs, rows.labels)[task.primary_metric]
            return f"| {stage.name} | {task.name} | {len(rows):,} | {fit:.2f} | {dev:.2f} | – |"
        probs = softmax(outputs, axis=1)
        fit = compute_metrics(task, probs.argmax(axis=1), rows.labels)[task.primary_metric]
        gold_prob = probs[np.arange(len(rows)), rows.labels].mean()
        return f"| {stage.name} | {task.name} | {len(rows):,} | {fit:.2f} | {dev:.2f} | {gold_prob:.3f} |"
    return None


def main(stages: Path) -> None:
    print("| teacher stage | task | training rows | score on them | dev score | mean p(gold) on them |")
    print("|---|---|---:|---:|---:|---:|")
    for stage in sorted(stages.glob("teacher-*")):
        if (stage / "train_done.json").is_file():
            line = fit_line(stage)
            if line:
                print(line)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
