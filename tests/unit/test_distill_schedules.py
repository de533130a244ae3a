"""Teacher-annealing λ schedules."""

from __future__ import annotations

import pytest

from bam.distill.schedules import LAMBDA_SCHEDULES, lambda_at
from bam.errors import BamError


def test_registry_names() -> None:
    assert set(LAMBDA_SCHEDULES) == {"linear", "constant", "gold", "teacher"}


@pytest.mark.parametrize(
    ("step", "total", "expected"),
    [(0, 1000, 0.0), (250, 1000, 0.25), (500, 1000, 0.5), (1000, 1000, 1.0), (7, 10, 0.7)],
)
def test_linear_rises_over_all_steps(step: int, total: int, expected: float) -> None:
    assert lambda_at("linear", step, total) == pytest.approx(expected)


def test_linear_is_clipped_and_handles_empty_runs() -> None:
    assert lambda_at("linear", 1500, 1000) == 1.0
    assert lambda_at("linear", -5, 1000) == 0.0
    assert lambda_at("linear", 0, 0) == 1.0


def test_linear_is_monotone() -> None:
    values = [lambda_at("linear", s, 37) for s in range(38)]
    assert values == sorted(values)
    assert values[0] == 0.0 and values[-1] == 1.0


def test_constant_gold_teacher() -> None:
    for step in (0, 10, 100):
        assert lambda_at("constant", step, 100) == 0.5
        assert lambda_at("constant", step, 100, constant=0.3) == 0.3
        assert lambda_at("gold", step, 100) == 1.0
        assert lambda_at("teacher", step, 100) == 0.0


def test_constant_out_of_range_refused() -> None:
    with pytest.raises(BamError, match=r"\[0, 1\]"):
        lambda_at("constant", 0, 10, constant=1.5)


def test_unknown_schedule_lists_valid_names() -> None:
    with pytest.raises(BamError, match="cosine") as info:
        lambda_at("cosine", 0, 10)
    for name in LAMBDA_SCHEDULES:
        assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_horizon_ends_the_schedule_early_with_gold_labels() -> None:
    assert [lambda_at("linear", s, 100, horizon=0.5) for s in (0, 25, 49, 50, 99)] == pytest.approx(
        [0.0, 0.5, 0.98, 1.0, 1.0]
    )
    assert [lambda_at("constant", s, 100, constant=0.3, horizon=0.8) for s in (0, 79, 80)] == [0.3, 0.3, 1.0]
    assert [lambda_at("teacher", s, 10, horizon=0.5) for s in (4, 5)] == [0.0, 1.0]


def test_full_horizon_is_the_schedule_itself() -> None:
    for schedule in LAMBDA_SCHEDULES:
        for step in range(0, 38):
            assert lambda_at(schedule, step, 37, horizon=1.0) == lambda_at(schedule, step, 37)


@pytest.mark.parametrize("horizon", [0.0, -0.5, 1.5])
def test_horizon_out_of_range_refused(horizon: float) -> None:
    with pytest.raises(BamError, match=r"horizon must be in \(0, 1\]"):
        lambda_at("linear", 0, 10, horizon=horizon)
