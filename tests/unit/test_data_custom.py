"""Custom-task YAML files: valid ones become TaskSpecs that read their files; mistakes name file and key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bam.data.load import load_examples
from bam.errors import BamError
from bam.tasks import get_task
from bam.tasks.custom import load_custom_task

TRAIN_TSV = 'id\ttitle\tbody\trating\n1\tGreat\tLoved it\tgood\n2\tMeh\t"Not" great\tbad\n3\tOK\tFine\tgood\n'
TEST_TSV = "id\ttitle\tbody\n10\tHmm\tUnsure\n"

VALID = """\
name: reviews
format: tsv
files:
  train: data/train.tsv
  test: {test}
text_columns: [title, body]
label_column: rating
labels: [bad, good]
index_column: id
"""


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text(TRAIN_TSV, encoding="utf-8")
    (tmp_path / "test.tsv").write_text(TEST_TSV, encoding="utf-8")
    return tmp_path


def _write(folder: Path, text: str, name: str = "task.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_task_reads_its_files(task_dir: Path) -> None:
    absolute_test = str(task_dir / "test.tsv")
    path = _write(task_dir, VALID.format(test=absolute_test))
    task = get_task(str(path))  # dispatched by the .yaml suffix
    assert task == load_custom_task(path)
    assert task.name == "reviews" and task.kind == "classification"
    assert task.text_columns == ("title", "body") and task.labels == ("bad", "good")
    assert task.metrics == ("accuracy",) and task.primary_metric == "accuracy"
    assert task.root == str(task_dir.resolve())
    assert task.splits["train"].path == "data/train.tsv" and task.splits["train"].labeled
    assert task.splits["test"].path == absolute_test and not task.splits["test"].labeled
    assert task.dev_splits == () and task.test_splits == ("test",) and "train" in task.splits

    # Relative paths resolve against the YAML's folder whatever data_dir says (even "hub").
    for data_dir in (None, "hub", "/nonexistent"):
        train = load_examples(task, "train", data_dir)
        assert train.texts == (["Great", "Meh", "OK"], ["Loved it", '"Not" great', "Fine"])
        assert train.labels.tolist() == [1, 0, 1] and train.ids == ["1", "2", "3"]
    test = load_examples(task, "test", None)
    assert test.labels is None and test.ids == ["10"]


def test_csv_regression_task(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text('s,score\n"a, b",1.5\nc,4\n', encoding="utf-8")
    path = _write(
        tmp_path,
        "name: sim_2\nformat: csv\nfiles: {dev: dev.csv}\n"
        "text_columns: s\nlabel_column: score\ntype: regression\n",
    )
    task = load_custom_task(path)
    assert task.kind == "regression" and task.labels == () and task.num_outputs == 1
    assert task.metrics == ("spearman",) and task.dev_splits == ("dev",) and "train" not in task.splits
    dev = load_examples(task, "dev", None)
    assert dev.texts == (["a, b", "c"],)
    assert np.array_equal(dev.labels, np.array([1.5, 4.0], dtype=np.float32))


def test_jsonl_task_with_integer_labels_and_f1(tmp_path: Path) -> None:
    rows = [{"text": "x", "y": 1}, {"text": "z", "y": 0}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = _write(
        tmp_path,
        "name: toy\nformat: jsonl\nfiles: {train: train.jsonl}\n"
        "text_columns: [text]\nlabel_column: y\nlabels: [0, 1]\nmetric: f1\n",
    )
    task = load_custom_task(path)
    assert task.labels == ("0", "1") and task.metrics == ("f1",) and task.primary_metric == "f1"
    assert load_examples(task, "train", None).labels.tolist() == [1, 0]


BASE = {
    "name": "reviews",
    "format": "tsv",
    "files": "{train: data/train.tsv}",
    "text_columns": "[title, body]",
    "label_column": "rating",
    "labels": "[bad, good]",
}


def _yaml(**changes: str | None) -> str:
    fields = {**BASE, **changes}
    return "".join(f"{key}: {value}\n" for key, value in fields.items() if value is not None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _yaml(lables="[bad, good]", labels=None),
            r"line 6: lables: unknown key \(did you mean 'labels'\?\)",
        ),
        (_yaml(text_column="body"), r"line 7: text_column: unknown key \(did you mean 'text_columns'\?\)"),
        (_yaml(colour="red"), r"colour: unknown key \(valid keys: name, format"),
        (_yaml(label_column=None), r"missing required key 'label_column'"),
        (_yaml(labels=None), r"missing key 'labels' \(or 'type: regression'"),
        (_yaml(type="regression"), r"line 6: labels: a regression task has no labels"),
        (_yaml(type="ranking"), r"type: 'ranking' is not 'classification' or 'regression'"),
        (_yaml(name="../evil"), r"line 1: name: '\.\./evil' must be lower-case"),
        (_yaml(name="a/b"), r"name: 'a/b' must be lower-case"),
        (_yaml(name="Reviews"), r"name: 'Reviews' must be lower-case"),
        (_yaml(name="rte"), r"name: 'rte' is a built-in task's name"),
        (_yaml(name="sst-2"), r"name: 'sst-2' is a built-in task's name"),
        (_yaml(name="mnli-pool"), r"name: 'mnli-pool' is a built-in task's name"),
        (_yaml(name="42"), r"name: expected a non-empty string, got 42"),
        (_yaml(format="xlsx"), r"line 2: format: 'xlsx' is not one of tsv, csv, jsonl"),
        (_yaml(files="{train: data/absent.tsv}"), r"files.train: file not found: .*absent\.tsv"),
        (
            _yaml(files="{training: data/train.tsv}"),
            r"files.training: unknown split \(did you mean 'train'\?\)",
        ),
        (_yaml(files="{test: data/train.tsv}"), r"files: needs at least a train or a dev file"),
        (_yaml(files="data/train.tsv"), r"files: expected a mapping"),
        (_yaml(text_columns="[a, b, c]"), r"text_columns: expected one column name or a list of one or two"),
        (_yaml(text_columns="[a, a]"), r"text_columns: the same column twice"),
        (_yaml(labels="[good]"), r"labels: expected a list of at least two label values"),
        (_yaml(labels="[yes, no]"), r"labels: label True must be written as in the files \(quote it"),
        (_yaml(labels="[bad, bad]"), r"labels: repeated label values"),
        (_yaml(metric="spearman"), r"metric: 'spearman' does not suit a classification task"),
        (_yaml(labels="[a, b, c]", metric="f1"), r"metric: f1 needs exactly two labels, the task has 3"),
        (_yaml(index_column="[id]"), r"index_column: expected a non-empty string"),
        ("name: reviews\nname: other\n", r"line 2: name: key given twice"),
        ("name: [unclosed\n", r"line 2: invalid YAML"),
        ("- just\n- a list\n", r"expected a mapping of keys"),
        ("", r"expected a mapping of keys"),
    ],
)
def test_mistakes_name_file_and_key(task_dir: Path, text: str, message: str) -> None:
    path = _write(task_dir, text)
    with pytest.raises(BamError, match=message) as info:
        load_custom_task(path)
    assert str(info.value).startswith(str(path.resolve()))
    assert "\n" not in str(info.value)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(BamError, match=r"absent\.yaml: custom-task file not found"):
        get_task(str(tmp_path / "absent.yaml"))


def test_nested_key_mistakes_name_their_line(task_dir: Path) -> None:
    text = _yaml(files=None) + "files:\n  train: data/train.tsv\n  deev: data/train.tsv\n"
    path = _write(task_dir, text)
    with pytest.raises(
        BamError, match=r"task\.yaml line 8: files\.deev: unknown split \(did you mean 'dev'\?\)"
    ):
        load_custom_task(path)
