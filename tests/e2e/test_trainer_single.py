"""scripts/trainer_single.py --check: the plain-Trainer fine-tune that bam's Single is compared with
(issue #30) runs end to end on a tiny model and records what the comparison needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import transformers

from tests.helpers import TESTS

pytestmark = pytest.mark.slow

SCRIPT = TESTS.parent / "scripts" / "trainer_single.py"


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The script in a fresh interpreter (~20 s a --check run; the timeout leaves room for a busy machine)."""
    command = [sys.executable, str(SCRIPT), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=TESTS.parent)


def _check_run(out: Path, *arguments: str) -> dict[str, Any]:
    done = _run("--check", "--output", str(out), *arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [path.name for path in out.iterdir()] == ["result.json"]  # atomic: no temporary file left
    return json.loads((out / "result.json").read_text())


def test_check_run_records_the_recipe_the_score_and_the_differences(tmp_path: Path) -> None:
    result = _check_run(tmp_path / "rte", "--task", "RTE")
    assert (result["task"], result["seed"], result["metric"], result["check"]) == ("rte", 1, "accuracy", True)
    recipe = result["recipe"]
    # glue5-cpu's teacher recipe, made tiny by --check: 48 rows in batches of 8 for 2 epochs.
    assert recipe["learning_rate"] == 1e-4 and recipe["weight_decay"] == 0.01
    assert (recipe["train_rows"], recipe["steps_per_epoch"], recipe["steps"], recipe["warmup_steps"]) == (
        48,
        6,
        12,
        1,
    )
    assert recipe["adam_epsilon"] == 1e-6 and recipe["keep_best"] is True
    assert recipe["model"] == "BertForSequenceClassification" and recipe["layerwise_decay"] == 1.0
    assert result["training_arguments"]["max_steps"] == 12
    # Evaluated where bam evaluates (each epoch's end); the best evaluation is kept, as bam keeps it.
    history = result["dev_history"]
    assert [entry["step"] for entry in history] == [6, 12]
    assert result["score"] == max(entry["score"] for entry in history)
    assert result["score_last"] == history[-1]["score"]
    assert 0.0 <= result["score"] <= 100.0
    assert result["precision"] in ("fp32", "bf16") and result["precision_reason"]
    assert result["training_arguments"]["bf16"] is (result["precision"] == "bf16")
    assert result["transformers"] == transformers.__version__
    assert result["seconds"] > 0 and result["bam_teacher_config"]["tasks"] == ["rte"]
    differences = " ".join(result["differences"])
    for flag in ("--group-by-length", "--bam-model", "--layerwise-decay"):
        assert flag in differences  # a plain Trainer: each difference names the flag that closes it


def test_match_bam_trains_bams_model_and_rates_and_takes_recipe_overrides(tmp_path: Path) -> None:
    result = _check_run(tmp_path / "stsb", "--task", "stsb", "--seed", "3", "--match-bam", "precision=fp32")
    assert (result["task"], result["seed"], result["metric"]) == ("stsb", 3, "spearman")
    recipe = result["recipe"]
    assert recipe["both_orders"] is True and recipe["train_rows"] == 96  # both sentence orders, as bam
    assert (recipe["model"], recipe["pooling"]) == ("bam.model.BamModel", "mean")
    assert recipe["layerwise_decay"] == 0.9 and recipe["group_by_length"] is True
    assert result["precision"] == "fp32" and result["training_arguments"]["bf16"] is False
    assert [entry["step"] for entry in result["dev_history"]] == [12, 24]
    assert len(result["differences"]) == 2  # random streams, and length grouping that is close
    assert not any(flag in " ".join(result["differences"]) for flag in ("--bam-model", "--layerwise-decay"))


@pytest.mark.parametrize(
    ("task", "message"),
    [("nosuch", "unknown task 'nosuch'"), ("wnli", "task wnli is not in preset glue5-cpu")],
)
def test_a_task_it_cannot_compare_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, task: str, message: str
) -> None:
    done = _run("--check", "--task", task, "--output", str(tmp_path / "out"))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainer_single: error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()
