"""scripts/precision_check.py: the pass/fail rule of issue #29's bf16 quality check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "precision_check.py"


def _run_folder(root: Path, scores: dict[int, dict[str, float]]) -> Path:
    """A run folder whose method ``m`` scores ``scores[seed]`` on task ``t`` (avg = the mean)."""
    for seed, by_task in scores.items():
        methods = {"single": {**by_task, "avg": sum(by_task.values()) / len(by_task)}}
        (root / "seeds" / str(seed)).mkdir(parents=True)
        (root / "seeds" / str(seed) / "results.json").write_text(
            json.dumps({"seed": seed, "methods": methods})
        )
    return root


def _check(tmp_path: Path, bf16: dict[int, dict[str, float]], seeds: list[int]) -> dict:
    fp32 = {1: {"cola": 20.0, "rte": 60.0}, 2: {"cola": 24.0, "rte": 61.0}, 3: {"cola": 22.0, "rte": 62.0}}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(_run_folder(tmp_path / "fp32", fp32)),
         str(_run_folder(tmp_path / "bf16", bf16)), "--seeds", *map(str, seeds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


def test_close_medians_pass(tmp_path: Path) -> None:
    bf16 = {1: {"cola": 21.0, "rte": 60.0}, 2: {"cola": 23.0, "rte": 61.0}, 3: {"cola": 22.5, "rte": 62.0}}
    summary = _check(tmp_path, bf16, [1, 2, 3])
    assert summary["passed"] and summary["complete"]
    assert summary["methods"]["single"]["task_deltas"]["cola"] == 0.5  # 22.5 - 22


def test_an_average_off_by_more_than_half_a_point_fails(tmp_path: Path) -> None:
    bf16 = {1: {"cola": 23.0, "rte": 60.0}, 2: {"cola": 25.0, "rte": 61.0}, 3: {"cola": 23.5, "rte": 62.0}}
    summary = _check(tmp_path, bf16, [1, 2, 3])  # cola's median +1.5 (within its spread 4), avg +0.75
    assert not summary["methods"]["single"]["avg_within_0.5"]
    assert summary["methods"]["single"]["tasks_within_fp32_spread"] and not summary["passed"]


def test_a_task_off_by_more_than_its_seed_spread_fails(tmp_path: Path) -> None:
    bf16 = {1: {"cola": 20.0, "rte": 63.5}, 2: {"cola": 20.0, "rte": 63.5}, 3: {"cola": 19.0, "rte": 63.5}}
    summary = _check(tmp_path, bf16, [1, 2, 3])  # rte +2.5 > its spread 2; avg -0.25
    assert summary["methods"]["single"]["avg_within_0.5"]
    assert not summary["methods"]["single"]["tasks_within_fp32_spread"] and not summary["passed"]


def test_missing_seeds_never_pass(tmp_path: Path) -> None:
    summary = _check(tmp_path, {1: {"cola": 20.0, "rte": 60.0}}, [1, 2, 3])
    assert summary["seeds"] == [1] and not summary["complete"] and not summary["passed"]
