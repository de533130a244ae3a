"""GLUE metrics and the averages that summarise them.

Metrics are looked up by the names in :attr:`TaskSpec.metrics`; nothing branches on a task's name.
Degenerate inputs (constant predictions, a constant column) score 0.0 rather than NaN, so a
collapsed model shows up as a bad number instead of poisoning an average.

Two averages are reported:

* :func:`bam_average` — the BAM paper's dev average: each task's *primary* metric on its *first*
  dev split (MNLI-m for MNLI), over tasks with ``in_bam_average`` (WNLI and AX excluded).
* :func:`glue_average` — the GLUE leaderboard convention: each task scores the unweighted mean of
  all its metrics (MNLI: the mean over matched and mismatched), averaged over the GLUE tasks
  present, WNLI included and AX (which has no metrics) excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bam.errors import BamError
from bam.tasks import get_task
from bam.tasks.glue import GLUE_TASKS
from bam.tasks.spec import TaskSpec

Metric = Callable[[np.ndarray, np.ndarray], float]  # (predictions, labels) -> value in [-1, 1]


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(accuracy_score(gold, pred))


def _f1(pred: np.ndarray, gold: np.ndarray) -> float:
    # Binary F1 with label id 1 as the positive class; no positives at all scores 0.0.
    return float(f1_score(gold == 1, pred == 1, zero_division=0.0))


def _mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    # MCC is undefined when either side is constant; GLUE's convention is 0.0.
    if np.unique(pred).size < 2 or np.unique(gold).size < 2:
        return 0.0
    return float(matthews_corrcoef(gold, pred))


def _correlation(fn: Callable) -> Metric:
    def metric(pred: np.ndarray, gold: np.ndarray) -> float:
        pred = np.asarray(pred, dtype=np.float64)
        gold = np.asarray(gold, dtype=np.float64)
        if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
            return 0.0  # a constant has no correlation with anything
        value = float(fn(pred, gold)[0])
        return 0.0 if np.isnan(value) else value

    return metric


METRICS: dict[str, Metric] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _correlation(pearsonr),
    "spearman": _correlation(spearmanr),
}


def compute_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``task.metrics`` in percent. Predictions are label ids (classification) or scores (regression)."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape:
        per_row = "label id" if task.kind == "classification" else "score"
        raise BamError(
            f"{task.name}: predictions of shape {predictions.shape} do not match labels of shape "
            f"{labels.shape} (expected one {per_row} per row)"
        )
    if predictions.size == 0:
        raise BamError(f"{task.name}: no predictions to score")
    unknown = [m for m in task.metrics if m not in METRICS]
    if unknown:
        raise BamError(f"{task.name}: unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
    return {name: 100.0 * METRICS[name](predictions, labels) for name in task.metrics}


def _split_metrics(
    task: TaskSpec, results: Mapping[str, Mapping[str, float]], split: str
) -> Mapping[str, float]:
    if split not in results:
        raise BamError(
            f"{task.name}: no results for dev split {split!r} (have: {', '.join(results) or 'none'})"
        )
    return results[split]


def _metric(task: TaskSpec, split: str, metrics: Mapping[str, float], name: str) -> float:
    if name not in metrics:
        raise BamError(f"{task.name}/{split}: no {name!r} in results (have: {', '.join(metrics) or 'none'})")
    return float(metrics[name])


def primary_score(task: TaskSpec, results: Mapping[str, Mapping[str, float]]) -> float:
    """The task's primary metric on its FIRST dev split (MNLI-m): what BAM's dev average uses.

    ``results`` maps dev split → metric name → value (percent), as :func:`compute_metrics` gives.
    """
    if not task.dev_splits or not task.primary_metric:
        raise BamError(f"{task.name}: task has no dev split or primary metric to score")
    split = task.dev_splits[0]
    return _metric(task, split, _split_metrics(task, results, split), task.primary_metric)


def glue_task_score(task: TaskSpec, results: Mapping[str, Mapping[str, float]]) -> float:
    """The leaderboard's score for one task: mean of all its metrics, then mean over its dev splits.

    For MNLI both dev splits (matched, mismatched) must be present; they count as one task.
    """
    if not task.dev_splits or not task.metrics:
        raise BamError(f"{task.name}: task has no dev split or metrics to score")
    per_split = []
    for split in task.dev_splits:
        metrics = _split_metrics(task, results, split)
        per_split.append(np.mean([_metric(task, split, metrics, name) for name in task.metrics]))
    return float(np.mean(per_split))


def _resolve(scores: Mapping[str, float]) -> dict[str, tuple[TaskSpec | None, float]]:
    """Scores by canonical task name; a name that is no GLUE task is a custom task (None)."""
    resolved: dict[str, tuple[TaskSpec | None, float]] = {}
    for key, value in scores.items():
        try:
            task: TaskSpec | None = get_task(key)
        except BamError:
            task = None  # a custom task, known by its name
        name = task.name if task is not None else key
        if name in resolved:
            raise BamError(f"task {name!r} appears twice in the scores (as {key!r})")
        resolved[name] = (task, float(value))
    return resolved


def bam_average(scores: Mapping[str, float]) -> float:
    """Mean of per-task scores (from :func:`primary_score`) over tasks with ``in_bam_average``.

    Keys are task names (any alias) or custom-task paths; WNLI, AX and other excluded tasks are
    ignored rather than refused, so a full results table can be passed as is.
    """
    kept = [value for task, value in _resolve(scores).values() if task is None or task.in_bam_average]
    if not kept:
        raise BamError("no task that counts towards the BAM average has a score")
    return float(np.mean(kept))


def glue_average(scores: Mapping[str, float]) -> float:
    """Mean of per-task scores (from :func:`glue_task_score`) over the GLUE tasks present.

    WNLI counts; AX (no metrics) and non-GLUE custom tasks are ignored. MNLI is one task.
    """
    kept = [
        value
        for task, value in _resolve(scores).values()
        if task is not None and task.name in GLUE_TASKS and task.metrics
    ]
    if not kept:
        raise BamError("no GLUE task has a score to average")
    return float(np.mean(kept))
