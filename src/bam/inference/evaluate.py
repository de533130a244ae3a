"""Dev-set evaluation: model outputs → predictions → the task's GLUE metrics → averages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from bam.data.features import Features, load_or_tokenize
from bam.data.load import load_examples
from bam.errors import BamError
from bam.inference.forward import outputs_to_predictions, predict_outputs
from bam.model import BamModel
from bam.precision import Precision
from bam.tasks.metrics import bam_average, compute_metrics, glue_average, glue_task_score, primary_score
from bam.tasks.spec import TaskSpec

Results = dict[str, dict[str, dict[str, float]]]  # task -> dev split -> metric -> percent


@dataclass
class EvalSplit:
    task: TaskSpec
    split: str
    features: Features
    labels: np.ndarray


def load_eval_splits(
    tasks: list[TaskSpec],
    data_dir: str | Path | None,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
) -> list[EvalSplit]:
    """Every labeled dev split of ``tasks``, tokenized (from the cache when possible)."""
    splits = []
    for task in tasks:
        for split in task.dev_splits:
            examples = load_examples(task, split, data_dir)
            if examples.labels is None:
                continue
            features = load_or_tokenize(examples, tokenizer, max_length, cache_dir)
            splits.append(EvalSplit(task, split, features, examples.labels))
    return splits


def evaluate(
    model: BamModel,
    splits: list[EvalSplit],
    pad_id: int,
    batch_size: int = 128,
    precision: Precision | None = None,
) -> Results:
    results: Results = {}
    for item in splits:
        outputs = predict_outputs(
            model, item.features, item.task.head_name, pad_id, batch_size, precision=precision
        )
        predictions = outputs_to_predictions(outputs, item.task.kind)
        results.setdefault(item.task.name, {})[item.split] = compute_metrics(
            item.task, predictions, item.labels
        )
    return results


def summarize(results: Results, tasks: list[TaskSpec]) -> dict[str, Any]:
    """Primary score per task plus BAM's and GLUE's averages over the tasks evaluated."""
    by_name = {task.name: task for task in tasks}
    scores = {name: primary_score(by_name[name], splits) for name, splits in results.items()}
    glue_scores = {name: glue_task_score(by_name[name], splits) for name, splits in results.items()}
    return {
        "scores": scores,
        "bam_avg": _average_or_none(bam_average, scores),
        "glue_avg": _average_or_none(glue_average, glue_scores),
    }


def _average_or_none(average: Callable[[dict[str, float]], float], scores: dict[str, float]) -> float | None:
    """An average, or None (JSON null; NaN is not JSON) when no task counts towards it (WNLI alone)."""
    try:
        return average(scores)
    except BamError:
        return None
