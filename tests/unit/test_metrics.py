"""GLUE metrics against scikit-learn/scipy and hand-derived values; the two averages by hand."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bam.errors import BamError
from bam.tasks import get_task
from bam.tasks.metrics import (
    METRICS,
    bam_average,
    compute_metrics,
    glue_average,
    glue_task_score,
    primary_score,
)


@pytest.fixture
def binary() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    labels = rng.integers(0, 2, size=200)
    preds = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    return preds, labels


def test_classification_metrics_match_sklearn(binary) -> None:
    preds, labels = binary
    assert METRICS["accuracy"](preds, labels) == pytest.approx(accuracy_score(labels, preds))
    assert METRICS["f1"](preds, labels) == pytest.approx(f1_score(labels, preds))
    assert METRICS["mcc"](preds, labels) == pytest.approx(matthews_corrcoef(labels, preds))


def test_classification_metrics_by_hand() -> None:
    # tp=3, fn=1, fp=2, tn=4
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    preds = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    tp, fn, fp, tn = 3, 1, 2, 4
    assert METRICS["accuracy"](preds, labels) == pytest.approx(0.7)
    assert METRICS["f1"](preds, labels) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert METRICS["mcc"](preds, labels) == pytest.approx(mcc)


def test_f1_positive_class_is_label_one() -> None:
    labels = np.array([0, 0, 0, 1])
    preds = np.array([0, 0, 0, 0])
    assert METRICS["f1"](preds, labels) == 0.0  # not the F1 of class 0
    assert METRICS["f1"](labels, labels) == 1.0


def test_mcc_multiclass_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=100)
    preds = np.where(rng.random(100) < 0.6, labels, rng.integers(0, 3, size=100))
    assert METRICS["mcc"](preds, labels) == pytest.approx(matthews_corrcoef(labels, preds))


def test_correlations_match_scipy_and_numpy() -> None:
    rng = np.random.default_rng(7)
    gold = rng.uniform(0, 5, size=150)
    pred = gold + rng.normal(scale=1.0, size=150)
    assert METRICS["pearson"](pred, gold) == pytest.approx(pearsonr(pred, gold)[0])
    assert METRICS["pearson"](pred, gold) == pytest.approx(np.corrcoef(pred, gold)[0, 1])
    assert METRICS["spearman"](pred, gold) == pytest.approx(spearmanr(pred, gold)[0])
    ranks = np.corrcoef(np.argsort(np.argsort(pred)), np.argsort(np.argsort(gold)))[0, 1]
    assert METRICS["spearman"](pred, gold) == pytest.approx(ranks)


def test_degenerate_inputs_score_zero_without_warnings() -> None:
    labels = np.array([0, 1, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert METRICS["mcc"](np.ones(4, dtype=int), labels) == 0.0
        assert METRICS["mcc"](np.ones(4, dtype=int), np.ones(4, dtype=int)) == 0.0
        assert METRICS["f1"](np.zeros(4, dtype=int), np.zeros(4, dtype=int)) == 0.0
        assert METRICS["pearson"](np.full(4, 2.5), np.arange(4.0)) == 0.0
        assert METRICS["spearman"](np.full(4, 2.5), np.arange(4.0)) == 0.0
        assert METRICS["pearson"](np.arange(4.0), np.full(4, 1.0)) == 0.0
        assert METRICS["pearson"](np.array([1.0]), np.array([2.0])) == 0.0


def test_compute_metrics_in_percent(binary) -> None:
    preds, labels = binary
    result = compute_metrics(get_task("mrpc"), preds, labels)
    assert set(result) == {"accuracy", "f1"}
    assert result["accuracy"] == pytest.approx(100 * accuracy_score(labels, preds))
    assert result["f1"] == pytest.approx(100 * f1_score(labels, preds))
    scores = compute_metrics(get_task("sts-b"), np.array([1.0, 2.0, 3.5]), np.array([1.0, 2.0, 3.0]))
    assert set(scores) == {"pearson", "spearman"}
    assert scores["spearman"] == pytest.approx(100.0)
    assert compute_metrics(get_task("cola"), np.array([1, 0]), np.array([0, 1])) == {"mcc": -100.0}


def test_compute_metrics_bad_input() -> None:
    rte = get_task("rte")
    with pytest.raises(BamError, match="do not match"):
        compute_metrics(rte, np.zeros(3), np.zeros(4))
    with pytest.raises(BamError, match="do not match"):
        compute_metrics(rte, np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(BamError, match="no predictions"):
        compute_metrics(rte, np.zeros(0), np.zeros(0))
    with pytest.raises(BamError, match="unknown metric 'bleu'"):
        compute_metrics(dataclasses.replace(rte, metrics=("bleu",)), np.zeros(2), np.zeros(2))


MNLI_RESULTS = {"dev_matched": {"accuracy": 84.0}, "dev_mismatched": {"accuracy": 83.0}}


def test_primary_score_uses_first_dev_split() -> None:
    assert primary_score(get_task("mnli"), MNLI_RESULTS) == 84.0
    assert primary_score(get_task("stsb"), {"dev": {"pearson": 88.0, "spearman": 87.5}}) == 87.5
    with pytest.raises(BamError, match="dev_matched"):
        primary_score(get_task("mnli"), {"dev_mismatched": {"accuracy": 83.0}})
    with pytest.raises(BamError, match="'accuracy'"):
        primary_score(get_task("rte"), {"dev": {"f1": 1.0}})
    with pytest.raises(BamError, match="no dev split"):
        primary_score(get_task("ax"), {})


def test_glue_task_score() -> None:
    assert glue_task_score(get_task("mnli"), MNLI_RESULTS) == pytest.approx(83.5)
    assert glue_task_score(get_task("mrpc"), {"dev": {"accuracy": 86.0, "f1": 90.0}}) == 88.0
    assert glue_task_score(get_task("stsb"), {"dev": {"pearson": 88.0, "spearman": 87.0}}) == 87.5
    with pytest.raises(BamError, match="dev_mismatched"):
        glue_task_score(get_task("mnli"), {"dev_matched": {"accuracy": 84.0}})


def test_bam_average_by_hand() -> None:
    scores = {"RTE": 60.0, "mrpc": 80.0, "mnli-m": 70.0, "wnli": 10.0, "ax": 0.0}
    assert bam_average(scores) == pytest.approx(70.0)  # WNLI and AX excluded
    with pytest.raises(BamError, match="appears twice"):
        bam_average({"rte": 60.0, "RTE": 61.0})
    with pytest.raises(BamError, match="BAM average"):
        bam_average({"wnli": 60.0})
    # A name that is no GLUE task is a custom task: it counts for BAM's average, not GLUE's.
    assert bam_average({"my_task": 50.0, "rte": 70.0}) == pytest.approx(60.0)
    assert glue_average({"my_task": 50.0, "rte": 70.0}) == pytest.approx(70.0)


def test_glue_average_by_hand() -> None:
    scores = {"rte": 60.0, "wnli": 40.0, "mnli": 83.5, "ax": 99.0}
    assert glue_average(scores) == pytest.approx((60.0 + 40.0 + 83.5) / 3)  # WNLI in, AX out
    with pytest.raises(BamError, match="GLUE task"):
        glue_average({"ax": 1.0})


def test_averages_from_full_results() -> None:
    results = {
        "cola": {"dev": {"mcc": 60.0}},
        "mrpc": {"dev": {"accuracy": 86.0, "f1": 90.0}},
        "mnli": MNLI_RESULTS,
        "wnli": {"dev": {"accuracy": 56.0}},
    }
    tasks = {name: get_task(name) for name in results}
    bam = bam_average({n: primary_score(tasks[n], r) for n, r in results.items()})
    glue = glue_average({n: glue_task_score(tasks[n], r) for n, r in results.items()})
    assert bam == pytest.approx((60.0 + 86.0 + 84.0) / 3)
    assert glue == pytest.approx((60.0 + 88.0 + 83.5 + 56.0) / 4)


def test_an_average_no_task_counts_towards_is_null_in_json() -> None:
    """WNLI alone has no BAM average; it was NaN, which json.dumps writes and JSON parsers refuse."""
    from bam.inference.evaluate import summarize

    summary = summarize({"wnli": {"dev": {"accuracy": 56.0}}}, [get_task("wnli")])
    assert summary["bam_avg"] is None and summary["glue_avg"] == pytest.approx(56.0)
    assert '"bam_avg": null' in json.dumps(summary)
