"""`inspect_data_dir` on the vendored files and on small files in the official format of the others."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bam.data.inspect import format_inspect_table, inspect_data_dir
from bam.data.load import default_data_dir
from bam.errors import BamError
from bam.tasks import get_task
from tests import helpers

FIXTURES = helpers.FIXTURES
GLUE_MIN = FIXTURES / "glue_min"
VENDORED = json.loads((FIXTURES / "vendored_counts.json").read_text())["tasks"]

# Counted by hand from the fixture files under tests/fixtures/glue_min.
GLUE_MIN_EXPECTED = {
    "qqp": {
        "train": {"rows": 5, "labels": {"0": 3, "1": 2}},
        "dev": {"rows": 3, "labels": {"0": 2, "1": 1}},
        "test": {"rows": 2, "labels": {}},
    },
    "mnli": {
        "train": {"rows": 6, "labels": {"contradiction": 1, "entailment": 3, "neutral": 2}},
        "dev_matched": {"rows": 4, "labels": {"contradiction": 2, "entailment": 1, "neutral": 1}},
        "dev_mismatched": {"rows": 3, "labels": {"contradiction": 2, "entailment": 1}},
        "test_matched": {"rows": 3, "labels": {}},
        "test_mismatched": {"rows": 2, "labels": {}},
    },
    "qnli": {
        "train": {"rows": 4, "labels": {"entailment": 1, "not_entailment": 3}},
        "dev": {"rows": 2, "labels": {"entailment": 1, "not_entailment": 1}},
        "test": {"rows": 1, "labels": {}},
    },
    "ax": {"test": {"rows": 4, "labels": {}}},
}


def test_vendored_dir_matches_manifest() -> None:
    report = inspect_data_dir(default_data_dir())
    expected = {
        task: {
            split: {"rows": info["rows"], "labels": info["labels"] or {}} for split, info in splits.items()
        }
        for task, splits in VENDORED.items()
    }
    assert report == {"tasks": expected}
    json.dumps(report)  # the CLI prints it as JSON


def test_official_format_fixtures() -> None:
    assert inspect_data_dir(GLUE_MIN) == {"tasks": GLUE_MIN_EXPECTED}


def test_fixture_label_counts_by_plain_parsing() -> None:
    # An independent count: split each line on tabs and take the label column by header name.
    for task_name, splits in GLUE_MIN_EXPECTED.items():
        task = get_task(task_name)
        for split, info in splits.items():
            lines = (GLUE_MIN / task.splits[split].path).read_text(encoding="utf-8").splitlines()
            header = lines[0].split("\t")
            assert all(len(line.split("\t")) == len(header) for line in lines[1:])
            assert len(lines) - 1 == info["rows"]
            if info["labels"]:
                column = header.index(task.label_column)
                values = [line.split("\t")[column] for line in lines[1:]]
                assert {v: values.count(v) for v in set(values)} == info["labels"]


def test_mnli_rows_with_empty_columns_and_quotes_are_read() -> None:
    from bam.data.readers import read_split

    examples = read_split(get_task("mnli"), "dev_matched", GLUE_MIN)
    assert examples.texts[0][3] == 'The "gift" was returned.'
    assert examples.ids == ["0", "1", "2", "3"]


def test_partial_folder_reports_only_present_files(tmp_path: Path) -> None:
    shutil.copytree(GLUE_MIN / "QNLI", tmp_path / "QNLI")
    (tmp_path / "QNLI" / "test.tsv").unlink()
    (tmp_path / "unrelated").mkdir()
    report = inspect_data_dir(tmp_path)
    assert report == {"tasks": {"qnli": {k: GLUE_MIN_EXPECTED["qnli"][k] for k in ("train", "dev")}}}
    assert inspect_data_dir(tmp_path / "unrelated") == {"tasks": {}}


def test_unreadable_file_is_an_error_not_skipped(tmp_path: Path) -> None:
    shutil.copytree(GLUE_MIN / "QQP", tmp_path / "QQP")
    dev = tmp_path / "QQP" / "dev.tsv"
    dev.write_text(dev.read_text(encoding="utf-8") + "1\t2\t3\tonly four\n", encoding="utf-8")
    with pytest.raises(BamError, match=r"QQP/dev\.tsv line 5: 4 fields, expected 6"):
        inspect_data_dir(tmp_path)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(BamError, match="not a folder"):
        inspect_data_dir(tmp_path / "absent")


def test_table() -> None:
    table = format_inspect_table({"tasks": GLUE_MIN_EXPECTED})
    lines = table.splitlines()
    assert lines[0].split() == ["task", "split", "rows", "labels"]
    assert len(lines) == 1 + sum(len(s) for s in GLUE_MIN_EXPECTED.values())
    assert any(line.split() == ["qqp", "train", "5", "0:3", "1:2"] for line in lines)
    assert any(line.split() == ["ax", "test", "4", "-"] for line in lines)
    assert format_inspect_table({"tasks": {}}) == "no GLUE files found"
