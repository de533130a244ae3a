"""The self-tuning sampler's rule: the lag measure, the factor g(lag) and the plans it draws."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from bam.config.train import TrainConfig, build_dataclass
from bam.data.batching import LAG_FACTOR_RANGE, epoch_plan, lag_factors, task_shares
from bam.data.features import Features
from bam.distill.lag import normalised_lag, target_distribution
from bam.errors import BamError
from bam.report.plots import plot_shares
from bam.train.sampling import slice_rows

SIZES = {"cola": 8551, "sst2": 20000, "mrpc": 7336, "rte": 2490}


def _shares(lags: Mapping[str, float | None]) -> dict[str, float]:
    return task_shares(SIZES, 0.75, lag_factors(lags))


def test_equal_lags_give_the_static_shares() -> None:
    for lag in (0.3, 1.0, 0.0):
        assert lag_factors(dict.fromkeys(SIZES, lag)) == dict.fromkeys(SIZES, 1.0)
        assert _shares(dict.fromkeys(SIZES, lag)) == pytest.approx(task_shares(SIZES, 0.75))


def test_permuting_the_tasks_permutes_the_shares() -> None:
    """No per-task constant: the rule sees a task only through its size and its lag."""
    lags = {"cola": 0.9, "sst2": 0.2, "mrpc": 0.4, "rte": 0.6}
    names = list(SIZES)
    for shift in range(1, len(names)):
        moved = {names[i]: names[(i + shift) % len(names)] for i in range(len(names))}
        sizes = {moved[n]: SIZES[n] for n in names}
        permuted = task_shares(sizes, 0.75, lag_factors({moved[n]: lags[n] for n in names}))
        assert {n: permuted[moved[n]] for n in names} == pytest.approx(_shares(lags))


def test_a_lagging_task_is_drawn_more_and_the_others_less() -> None:
    static = task_shares(SIZES, 0.75)
    shares = _shares({"cola": 0.8, "sst2": 0.2, "mrpc": 0.2, "rte": 0.2})
    assert shares["cola"] > static["cola"]
    assert all(shares[n] < static[n] for n in ("sst2", "mrpc", "rte"))
    assert sum(shares.values()) == pytest.approx(1.0)


def test_the_factor_is_clipped_and_an_unmeasured_task_keeps_its_share() -> None:
    low, high = LAG_FACTOR_RANGE
    factors = lag_factors({"a": 100.0, "b": 0.0, "c": 0.0, "d": None})
    assert factors == {"a": high, "b": low, "c": low, "d": 1.0}


def test_over_the_median_one_outlier_does_not_floor_the_other_tasks() -> None:
    """glue7-cpu seed 3: RTE's lag (2.56) pulled the mean up and every other factor to the floor."""
    lags = {"rte": 2.56, "cola": 0.17, "mrpc": 0.19, "sst2": 0.10, "stsb": 0.05}
    low, high = LAG_FACTOR_RANGE
    assert lag_factors(lags) == {"rte": high, "cola": low, "mrpc": low, "sst2": low, "stsb": low}
    by_median = lag_factors(lags, "median")
    assert by_median["rte"] == high and by_median["cola"] == 1.0  # the median lag is CoLA's
    assert by_median["stsb"] == low < by_median["sst2"] < by_median["cola"] < by_median["mrpc"] < high
    assert lag_factors(dict.fromkeys(SIZES, 0.4), "median") == dict.fromkeys(SIZES, 1.0)


def test_lag_is_zero_for_the_target_and_one_for_the_best_constant() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3))
    target = target_distribution(logits, np.zeros(50, dtype=np.int64), 3)
    assert normalised_lag(logits, target, "classification") == pytest.approx(0.0, abs=1e-9)
    constant = np.tile(np.log(target.mean(axis=0)), (50, 1))
    assert normalised_lag(constant, target, "classification") == pytest.approx(1.0)
    worse = np.tile(np.log([0.8, 0.1, 0.1]), (50, 1))  # any other constant is worse than the mean
    lag = normalised_lag(worse, target, "classification")
    assert lag is not None and lag > 1.0
    scores = rng.normal(size=50) * 2 + 3
    assert normalised_lag(scores, scores, "regression") == 0.0
    assert normalised_lag(np.full(50, scores.mean()), scores, "regression") == pytest.approx(1.0)


def test_lag_does_not_depend_on_a_tasks_scale_or_label_count() -> None:
    rng = np.random.default_rng(1)
    target, student = rng.normal(size=40), rng.normal(size=40)
    assert normalised_lag(10 * student, 10 * target, "regression") == pytest.approx(
        normalised_lag(student, target, "regression")
    )
    gold = rng.integers(0, 2, size=40)  # gold labels as one-hot targets: the lag is CE / H(labels)
    onehot = target_distribution(None, gold, 2)
    assert onehot.sum(axis=1).tolist() == [1.0] * 40
    assert normalised_lag(np.zeros((40, 2)), onehot, "classification") == pytest.approx(
        np.log(2) / -sum(p * np.log(p) for p in (gold.mean(), 1 - gold.mean()))
    )


def test_no_lag_when_the_targets_do_not_vary() -> None:
    assert normalised_lag(np.zeros(5), np.full(5, 2.0), "regression") is None
    same = target_distribution(None, np.ones(5, dtype=np.int64), 2)
    assert normalised_lag(np.zeros((5, 2)), same, "classification") is None


def test_a_part_of_an_epoch_is_another_pure_plan_and_part_zero_is_the_epoch() -> None:
    lengths = [np.full(30, 5), np.full(20, 7)]
    whole = epoch_plan(lengths, 4, 0.75, seed=3, epoch=1)
    assert [b.rows.tolist() for b in epoch_plan(lengths, 4, 0.75, seed=3, epoch=1, from_step=0)] == [
        b.rows.tolist() for b in whole
    ]
    later = epoch_plan(lengths, 4, 0.75, seed=3, epoch=1, from_step=5, boosts=[2.0, 1.0])
    again = epoch_plan(lengths, 4, 0.75, seed=3, epoch=1, from_step=5, boosts=[2.0, 1.0])
    assert len(later) == len(whole)
    assert [b.task_ids.tolist() for b in later] == [b.task_ids.tolist() for b in again]
    assert [b.task_ids.tolist() for b in later] != [b.task_ids.tolist() for b in whole]


def test_the_slice_is_a_fixed_seeded_choice_of_training_rows() -> None:
    rows = slice_rows(1000, 64, seed=7)
    assert len(set(rows.tolist())) == 64 and rows.tolist() == sorted(rows.tolist()) and rows.max() < 1000
    assert slice_rows(1000, 64, seed=7).tolist() == rows.tolist()
    assert slice_rows(1000, 64, seed=8).tolist() != rows.tolist()
    assert slice_rows(10, 64, seed=7).tolist() == list(range(10))


def test_features_take_keeps_the_rows_asked_for() -> None:
    features = Features(np.arange(10, dtype=np.int32), np.zeros(10, dtype=np.int8), np.array([0, 3, 4, 10]))
    taken = features.take(np.array([2, 0]))
    assert len(taken) == 2 and taken.lengths.tolist() == [6, 3]
    assert taken.row(0)[0].tolist() == list(range(4, 10)) and taken.row(1)[0].tolist() == [0, 1, 2]


def _stage(folder: Path, record: dict) -> list[str]:
    folder.mkdir(parents=True)
    (folder / "train_done.json").write_text(json.dumps(record))
    return [str(folder)]


def test_the_shares_plot_follows_an_adaptive_student_over_training(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    static = {"rte": 0.4, "stsb": 0.6}
    updates = [
        {"step": 0, "shares": static},
        {"step": 5, "shares": {"rte": 0.55, "stsb": 0.45}},
    ]
    stages = {
        "bam": _stage(tmp_path / "bam", {"shares": static, "total_steps": 10}),
        "bam_adaptive": _stage(
            tmp_path / "adaptive", {"shares": static, "total_steps": 10, "shares_over_training": updates}
        ),
    }
    drawn = {
        name: plot_shares(chosen, tmp_path / f"{name}.png")
        for name, chosen in (("both", stages), ("adaptive", {"bam_adaptive": stages["bam_adaptive"]}),
                             ("static", {"bam": stages["bam"]}))
    }  # fmt: skip
    png = {name: path.read_bytes() for name, path in drawn.items() if path is not None}
    assert png["both"] == png["adaptive"] != png["static"]  # the adaptive student's lines, else bars


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sampling": "dynamic"}, "sampling must be one of static, adaptive, got 'dynamic'"),
        ({"sampling_update_every": -1}, "sampling_update_every must be 0"),
        ({"sampling_slice": 1}, "sampling_slice must be at least 2, got 1"),
        ({"sampling_lag_target": "gold"}, "sampling_lag_target must be one of teacher, annealed"),
        ({"sampling_lag_scale": "max"}, "sampling_lag_scale must be one of mean, median"),
    ],
)
def test_a_bad_sampling_setting_is_refused_by_its_key(values: dict, message: str) -> None:
    with pytest.raises(BamError, match=message):
        build_dataclass(TrainConfig, values, "run.yaml")
