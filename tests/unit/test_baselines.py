"""The constant prediction each teacher must beat, and the report's flag for one that does not."""

from __future__ import annotations

import pytest

from bam.config.run import load_run_config
from bam.experiment.baselines import constant_baselines
from bam.report.tables import teacher_check


def test_constant_baselines_of_the_demo_tasks() -> None:
    baselines = constant_baselines(load_run_config("demo", None, []))
    # SST-2 dev: 444 of 872 rows are the training majority (positive); MRPC: 279 of 408
    # paraphrases; STS-B: no correlation for a constant score.
    assert baselines == pytest.approx({"sst2": 100 * 444 / 872, "mrpc": 100 * 279 / 408, "stsb": 0.0})


def test_a_teacher_near_chance_is_flagged_and_old_results_show_nothing() -> None:
    results = {
        "methods": {"single": {"rte": 53.5, "mrpc": 80.0, "avg": 66.8}, "bam": {"rte": 60.0, "avg": 60.0}},
        "details": {"baselines": {"rte": 52.7, "mrpc": 68.4}, "teacher_margin": 2.0},
    }
    text = teacher_check(results)
    mrpc, rte = (line for line in text.splitlines() if line.startswith(("| RTE", "| MRPC")))  # GLUE's order
    assert "BELOW" in rte and "ok" in mrpc
    assert "Teacher(s) of RTE at or near chance" in text
    assert teacher_check({"methods": results["methods"], "details": {}}) == ""  # before baselines


def test_the_teacher_rows_follow_the_tables_order_whatever_order_the_json_kept() -> None:
    """results.json is written with sorted keys: the report written again from it must list the
    teachers as the run's own report did (SST-2, MRPC, STS-B), so it reproduces byte for byte."""
    single = {"sst2": 80.0, "mrpc": 71.0, "stsb": 77.0, "avg": 76.0}
    results = {"methods": {"single": single}, "details": {"baselines": {}, "teacher_margin": 2.0}}
    constants = {"sst2": 50.9, "mrpc": 68.4, "stsb": 0.0}
    for order in (["sst2", "mrpc", "stsb"], ["mrpc", "sst2", "stsb"], ["stsb", "mrpc", "sst2"]):
        results["details"]["baselines"] = {task: constants[task] for task in order}
        rows = [line.split("|")[1].strip() for line in teacher_check(results).splitlines()[2:]]
        assert rows == ["SST-2", "MRPC", "STS-B"], order
