"""Report statistics: spread over seeds and the Mann–Whitney U test, checked by hand."""

from __future__ import annotations

import json

import pytest

from bam.report.tables import bam_versus, format_table, seed_statistics


def test_mann_whitney_by_hand() -> None:
    # BAM beats Single on every seed pair: U = n1·n2 = 9, exact one-sided p = 1 / C(6, 3) = 0.05.
    # BAM vs Multi: pairs BAM wins: 64 beats 62 and 63, 63.5 beats 62 and 63, 65 beats all three → U = 7.
    # The other direction: Single wins no pair (p = 1); Multi wins 2 of 9, P(U ≥ 2) = 18 / 20 = 0.9.
    per_seed = {
        "1": {"single": {"avg": 60.0}, "multi": {"avg": 62.0}, "bam": {"avg": 64.0}},
        "2": {"single": {"avg": 61.0}, "multi": {"avg": 63.0}, "bam": {"avg": 63.5}},
        "3": {"single": {"avg": 59.0}, "multi": {"avg": 64.5}, "bam": {"avg": 65.0}},
    }
    table = seed_statistics(per_seed)
    assert "| Single (teachers) | 60.00 | 59.00 | 61.00 | 9.0 | 0.050 | 1.000 |" in table
    assert "| Multi (gold labels) | 63.00 | 62.00 | 64.50 | 7.0 | 0.200 | 0.900 |" in table
    assert "| BAM (teacher annealing) | 64.00 | 63.50 | 65.00 | – | – | – |" in table


def test_task_ranges_over_seeds() -> None:
    per_seed = {
        "1": {"single": {"rte": 55.0, "avg": 55.0}, "bam": {"rte": 60.0, "avg": 60.0}},
        "2": {"single": {"rte": 58.5, "avg": 58.5}, "bam": {"rte": 57.25, "avg": 57.25}},
        "3": {"single": {"rte": 56.0, "avg": 56.0}, "bam": {"rte": 59.0, "avg": 59.0}},
    }
    table = seed_statistics(per_seed)
    assert "| method | RTE | avg |" in table
    assert "| Single (teachers) | 55.00–58.50 | 55.00–58.50 |" in table
    assert "| BAM (teacher annealing) | 57.25–60.00 | 57.25–60.00 |" in table


def test_table_orders_methods_as_the_paper() -> None:
    table = format_table({"bam": {"rte": 1.0, "avg": 1.0}, "single": {"rte": 2.0, "avg": 2.0}})
    lines = table.splitlines()
    assert lines[2].startswith("| Single") and lines[3].startswith("| BAM")


def test_bam_versus_counts_gaps_and_tasks_not_behind() -> None:
    methods = {
        "single": {"rte": 60.0, "cola": 30.0, "avg": 45.0},
        "multi": {"rte": 62.0, "cola": 35.0, "avg": 48.5},
        "bam": {"rte": 60.0, "cola": 34.0, "avg": 47.0},
    }
    text = bam_versus(methods)
    assert "| Single (teachers) | +2.00 | 2 of 2: CoLA, RTE |" in text  # a tie counts as not behind
    assert "| Multi (gold labels) | -1.50 | 0 of 2: none |" in text
    assert bam_versus({"single": methods["single"]}) == ""


def test_columns_follow_glue_order_whatever_the_json_order() -> None:
    """Results read back from sorted JSON list tasks alphabetically; tables keep GLUE's order."""
    methods = {"bam": {"avg": 1.0, "mytask": 1.0, "rte": 1.0, "sst2": 1.0, "cola": 1.0}}
    header = format_table(methods).splitlines()[0]
    assert header == "| method | CoLA | SST-2 | RTE | mytask | avg |"


def test_teachers_only_run_has_no_lambda_plot(tmp_path) -> None:
    from bam.report.plots import plot_lambda

    assert plot_lambda({"methods": {"single": {}}}, tmp_path / "lambda.png") is None
    assert not (tmp_path / "lambda.png").exists()
    assert plot_lambda(
        {"methods": {"single": {}, "bam": {"lambda_schedule": "linear"}}}, tmp_path / "lambda.png"
    )
    assert (tmp_path / "lambda.png").stat().st_size > 0


def test_lambda_plot_reads_the_schedule_the_students_trained_with() -> None:
    """A schedule set in the ``student`` section (not the method's entry) is the one plotted: the
    plot once read the method's entry alone and drew ``bam: {}`` as gold while it trained linear."""
    from bam.report.plots import lambda_schedules

    config = {
        "tasks": ["rte"],
        "student": {"lambda_schedule": "linear", "lambda_horizon": 0.75},
        "methods": {"single": {}, "bam": {}, "multi": {"lambda_schedule": "gold"}},
    }
    assert lambda_schedules(config) == {"bam": ("linear", 0.5, 0.75), "multi": ("gold", 0.5, 0.75)}


def test_no_dev_curve_plot_without_stage_records(tmp_path) -> None:
    from bam.report.plots import plot_dev_curves

    assert plot_dev_curves({"bam": [str(tmp_path / "not-here")]}, tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()
    stage = tmp_path / "stage"
    stage.mkdir()
    history = [{"epoch": e, "scores": {"rte": 50.0 + e}} for e in (1, 2)]
    (stage / "train_done.json").write_text(json.dumps({"history": history}))
    assert plot_dev_curves({"bam": [str(stage)]}, tmp_path / "curves.png") == tmp_path / "curves.png"
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_a_merged_report_plots_training_from_the_first_seed_whose_stages_are_at_hand(tmp_path) -> None:
    """A merge names seed 1's stages where they trained, on another machine: the dev curves come
    from seed 2, whose records are here (they were left out before, as if no seed had any)."""
    pytest.importorskip("matplotlib")
    from bam.report.plots import seed_with_records, write_plots

    stage = tmp_path / "stage"
    stage.mkdir()
    history = [{"epoch": e, "scores": {"rte": 50.0 + e}} for e in (1, 2)]
    (stage / "train_done.json").write_text(json.dumps({"history": history}))
    stages = {"1": {"bam": [str(tmp_path / "elsewhere")]}, "2": {"bam": [str(stage)]}}
    details = {"seeds": [1, 2], "stages": stages, "config": {"tasks": ["rte"], "methods": {"bam": {}}}}
    assert seed_with_records(details) == ("2", stages["2"])
    assert seed_with_records({**details, "stages": {"1": stages["1"]}}) == ("", {})
    written = write_plots(tmp_path, {"methods": {"bam": {"rte": 51.0, "avg": 51.0}}, "details": details})
    assert tmp_path / "plot_dev_curves.png" in written


@pytest.mark.parametrize(
    ("results", "needle"),
    [
        ({"metric": "bam_avg"}, "'methods' must map"),
        ({"methods": {"bam": "x"}}, "'methods' must map"),
        ({"methods": {"bam": {"rte": "high"}}}, "'methods' must map"),
        ({"methods": {"bam": {"rte": 60.0}}}, "details.seeds is missing"),
        ({"methods": {"bam": {"rte": 60.0}}, "details": {"seeds": [1]}}, "details.per_seed"),
    ],
)
def test_a_results_file_bam_did_not_write_is_named(tmp_path, capsys, results, needle) -> None:
    """`bam report` met these with KeyError/AttributeError tracebacks."""
    from bam.cli.app import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bam: error: ") and err.count("\n") == 1 and needle in err, err
    assert not (run / "report.md").exists()
    if "details" in needle:  # the table alone needs only the methods
        assert main(["report", str(run), "--compare-only"]) == 0
