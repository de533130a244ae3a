"""Report labels of methods other than the paper's three: read off their settings, not their names."""

from __future__ import annotations

from dataclasses import asdict

from bam.config.run import load_run_config
from bam.report.names import method_labels
from bam.report.tables import format_table


def test_a_method_is_labelled_by_whom_it_learns_from_and_where_it_starts() -> None:
    methods = {
        "mm": "{lambda_schedule: linear, teacher: multi}",
        "mmm": "{lambda_schedule: linear, teacher: mm}",
        "born_again": "{lambda_schedule: linear, per_task: true}",
        "bam_ft": "{per_task: true, init_from: bam, lambda_schedule: gold}",
        "taught_ft": "{per_task: true, init_from: bam, teacher: bam, lambda_schedule: linear}",
        "multi_ft": "{init_from: multi}",
        "bam_cola15": "{lambda_schedule: linear, sampling_boost: {rte: 1.5}}",
        "mm_cola": "{lambda_schedule: linear, teacher: bam_cola15}",
        "gold_a": "{lambda_schedule: gold}",
        "gold_b": "{}",
        "mm_a": "{lambda_schedule: linear, teacher: multi, learning_rate: 5.0e-5}",
        "mm_b": "{lambda_schedule: linear, teacher: multi, epochs: 2}",
    }
    config = load_run_config("smoke", None, [f"methods.{name}={value}" for name, value in methods.items()])
    assert method_labels(asdict(config)) == {
        "single": "Single (teachers)",
        "multi": "Multi (gold labels)",
        "bam": "BAM (teacher annealing)",
        "mm": "Multi→Multi",
        "mmm": "Multi→Multi→Multi",  # a second round
        "born_again": "born_again",  # taught by the teachers: its own name, as before
        "bam_ft": "BAM → fine-tuned",
        "taught_ft": "BAM → fine-tuned, taught by BAM",
        "multi_ft": "Multi → fine-tuned on all tasks",
        "bam_cola15": "bam_cola15",
        "mm_cola": "bam_cola15→Multi",
        "gold_a": "gold_a",
        "gold_b": "gold_b",
        "mm_a": "mm_a (Multi→Multi)",  # two methods alike: each by its name
        "mm_b": "mm_b (Multi→Multi)",
    }


def test_a_table_uses_the_labels_and_a_run_config_it_cannot_read_gives_none() -> None:
    config = load_run_config("smoke", None, ["methods.ft={per_task: true, init_from: bam}"])
    table = format_table({"ft": {"rte": 1.0, "avg": 1.0}}, labels=method_labels(asdict(config)))
    assert table.splitlines()[2].startswith("| BAM → fine-tuned |")
    assert method_labels({"methods": "not a mapping"}) == {}
    assert format_table({"ft": {"rte": 1.0, "avg": 1.0}}).splitlines()[2].startswith("| ft |")
