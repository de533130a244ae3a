"""What a model that ignores its input scores on each dev set: the bar a teacher must clear.

A teacher at chance teaches nothing: distilling from it only adds noise to the gold labels. So
every run records, per task, the dev score of the constant prediction a model could learn from
the training labels alone — the majority class for classification (MRPC's "paraphrase" scores
81 F1 and 68% accuracy without reading a word), the training mean for regression (a constant has
no correlation: 0) — and the report flags a teacher that does not beat it by
:data:`TEACHER_MARGIN` points.
"""

from __future__ import annotations

import numpy as np

from bam.config.run import RunConfig
from bam.data.load import load_examples
from bam.data.prepare import training_rows
from bam.tasks import get_task
from bam.tasks.metrics import compute_metrics, primary_score

TEACHER_MARGIN = 2.0  # points above the constant prediction a teacher must reach to be trusted


def constant_baselines(config: RunConfig) -> dict[str, float]:
    """Per task (by name), the primary dev score of the constant prediction from the training rows
    the run's teachers train on."""
    scores = {}
    for name in config.tasks:
        task = get_task(name)
        labels = np.asarray(training_rows(task, config.teacher_config(name, config.seeds[0])).labels)
        if task.kind == "regression":
            constant: float | int = float(labels.mean())
        else:
            constant = int(np.bincount(labels.astype(np.int64)).argmax())
        results = {}
        for split in task.dev_splits:
            gold = load_examples(task, split, config.teacher_config(name, config.seeds[0]).data_dir).labels
            if gold is not None:
                results[split] = compute_metrics(task, np.full(len(gold), constant), np.asarray(gold))
        if task.dev_splits and task.dev_splits[0] in results:
            scores[task.name] = primary_score(task, results)
    return scores
