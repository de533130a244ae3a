"""Training tasks from tables in memory (bam.task_from_data): checked as files are, keyed by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

import bam
from bam.data.load import load_examples
from bam.errors import BamError
from bam.tasks import get_task

FRAME = pd.DataFrame(
    {
        "text": ["good film", "bad film", "fine", "awful"],
        "label": ["pos", "neg", "pos", "neg"],
        "n": [1, 2, 3, 4],
    }
)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_dataframe_task_reads_back_as_its_rows() -> None:
    path = bam.task_from_data("reviews", train=FRAME, dev=FRAME.iloc[:2], text_columns="text")
    task = get_task(path)
    assert (task.name, task.kind, task.labels, task.text_columns) == (
        "reviews",
        "classification",
        ("neg", "pos"),
        ("text",),
    )
    train = load_examples(task, "train")
    assert train.texts == (list(FRAME["text"]),)
    assert train.labels is not None and list(train.labels) == [1, 0, 1, 0]
    assert len(load_examples(task, "dev")) == 2


def test_the_same_data_gives_the_same_path_and_a_changed_value_another() -> None:
    first = bam.task_from_data("reviews", train=FRAME, text_columns="text")
    again = bam.task_from_data("reviews", train=FRAME.copy(), text_columns="text")
    changed = FRAME.copy()
    changed.loc[2, "text"] = "fine!"
    other = bam.task_from_data("reviews", train=changed, text_columns="text")
    assert first == again
    assert other != first
    prints = [load_examples(get_task(p), "train").fingerprint() for p in (first, other)]
    assert prints[0] != prints[1]


def test_a_dataset_dict_spreads_over_its_splits_and_test_needs_no_label() -> None:
    pairs = {"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"], "label": [0, 1, 0]}
    data = DatasetDict(
        train=Dataset.from_dict(pairs),
        validation=Dataset.from_dict(pairs),
        test=Dataset.from_dict({**pairs, "label": [-1, -1, -1]}),
    )
    task = get_task(bam.task_from_data("nli", data, text_columns=["premise", "hypothesis"]))
    assert task.is_pair and task.labels == ("0", "1")
    assert (task.dev_splits, task.test_splits) == (("dev",), ("test",))
    assert load_examples(task, "test").labels is None
    assert load_examples(task, "dev").texts == (["a", "b", "c"], ["x", "y", "z"])


def test_a_regression_task_from_a_list_of_dicts() -> None:
    rows = [{"s": "one", "score": 0.5}, {"s": "two", "score": 4}, {"s": "three", "score": "2.25"}]
    task = get_task(
        bam.task_from_data("scores", train=rows, text_columns="s", label_column="score", kind="regression")
    )
    assert task.kind == "regression" and task.primary_metric == "spearman"
    labels = load_examples(task, "train").labels
    assert labels is not None and np.allclose(labels, [0.5, 4.0, 2.25])


@pytest.mark.parametrize(
    ("train", "extra", "message"),
    [
        (
            FRAME.drop(columns=["label"]),
            {},
            "train: DataFrame row 0: missing column(s) 'label' (found: 'text', 'n')",
        ),
        (FRAME, {"labels": ["pos", "bad"]}, "train: DataFrame row 1: unknown label 'neg' in column 'label'"),
        ([], {}, "train: no rows"),
        (FRAME.iloc[:0], {}, "train: DataFrame: no rows"),
        (
            "train.tsv",
            {},
            "train: expected a datasets.Dataset, a pandas DataFrame or a list of dicts, got str",
        ),
        (FRAME.assign(text=["a", ["b"], "c", "d"]), {}, "train: DataFrame row 1: column 'text' holds list"),
        (
            Dataset.from_dict({"text": ["a", "b"], "label": [1, 1]}),
            {},
            "train: column 'label' holds one label value",
        ),
        (
            [{"text": "a", "label": "x"}],
            {"kind": "regression"},
            "train: rows row 0: label 'x' is not a number",
        ),
        (
            FRAME,
            {"metric": "pearson"},
            "task_from_data('reviews'): metric: 'pearson' does not suit a classification",
        ),
        (FRAME, {"name": "rte"}, "task_from_data('rte'): name: 'rte' is a"),
        (
            DatasetDict(training=Dataset.from_dict({"text": ["a"]})),
            {},
            "DatasetDict split(s) 'training': use train",
        ),
    ],
)
def test_bad_data_is_one_line_naming_split_and_row(train: object, extra: dict, message: str) -> None:
    kwargs = {"name": "reviews", "text_columns": "text", **extra}
    with pytest.raises(BamError) as err:
        bam.task_from_data(train=train, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_dev_label_the_training_rows_never_had_is_refused() -> None:
    dev = pd.DataFrame({"text": ["meh"], "label": ["mixed"]})
    with pytest.raises(BamError, match=r"^dev: DataFrame row 0: unknown label 'mixed'"):
        bam.task_from_data("reviews", train=FRAME, dev=dev, text_columns="text")


def test_a_named_folder_holds_the_task_and_someone_elses_files_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "my-task"
    path = bam.task_from_data("reviews", train=FRAME, text_columns="text", folder=folder)
    assert Path(path) == folder / "task.yaml"
    bam.task_from_data(
        "reviews", train=FRAME.iloc[1:], text_columns="text", folder=folder
    )  # a task: replaced
    assert len(load_examples(get_task(path), "train")) == 3
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(BamError, match="folder is not empty and holds no task"):
        bam.task_from_data("reviews", train=FRAME, text_columns="text", folder=foreign)
    assert (foreign / "todo.txt").read_text() == "mine"
