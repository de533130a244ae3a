"""Train on tasks built from a DataFrame and a Dataset, then predict from a list of dicts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset

import bam
from bam.config.train import TrainConfig
from bam.data.load import load_examples
from bam.tasks import get_task
from bam.train.loop import train


def _frame(task: str, rows: int) -> pd.DataFrame:
    """Rows of a vendored GLUE split as a DataFrame of the file's own columns and label values."""
    spec = get_task(task)
    examples = load_examples(spec, "train")
    assert examples.labels is not None
    data = {column: texts[:rows] for column, texts in zip(spec.text_columns, examples.texts, strict=True)}
    return pd.DataFrame({**data, "label": [spec.labels[i] for i in examples.labels[:rows]]})


def test_tasks_from_a_dataframe_and_a_dataset_train_and_predict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_train_values: dict
) -> None:
    monkeypatch.setenv("BAM_CACHE", str(tmp_path / "cache"))
    reviews = _frame("sst-2", 48)
    nli = Dataset.from_pandas(_frame("rte", 40))
    pair = ["sentence1", "sentence2"]
    tasks = [
        bam.task_from_data("reviews", reviews.iloc[:32], reviews.iloc[32:], text_columns="sentence"),
        bam.task_from_data("nli", nli.select(range(32)), nli.select(range(32, 40)), text_columns=pair),
    ]
    config = TrainConfig(tasks=tasks, **tiny_train_values)
    result = train(config, tmp_path / "run", quiet=True)
    assert set(result.dev["scores"]) == {"reviews", "nli"}

    # The same data again gives the same task paths, so the same key: the finished run is found.
    again = bam.task_from_data(
        "reviews", reviews.iloc[:32].copy(), reviews.iloc[32:], text_columns="sentence"
    )
    assert again == tasks[0]
    steps: list[object] = []
    train(TrainConfig(tasks=[again, tasks[1]], **tiny_train_values), tmp_path / "run", on_step=steps.append)
    assert steps == []

    predictor = bam.Predictor.load(tmp_path / "run", device="cpu")
    assert sorted(predictor.tasks) == ["nli", "reviews"]
    # Asked by its task path, a head reads the task's own columns; by its name, text (text_a, text_b).
    answers = predictor.predict(tasks[0], [{"sentence": "a joy to watch"}, {"sentence": "dull"}])
    assert [set(a) for a in answers] == [{"id", "label", "probabilities"}] * 2
    assert {a["label"] for a in answers} <= {"0", "1"}
    both = predictor.predict("nli", [{"text_a": "A man sleeps.", "text_b": "A person rests."}])
    assert both[0]["label"] in {"entailment", "not_entailment"}
