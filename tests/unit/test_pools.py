"""MNLI-pool and QNLI-pool: the shipped GLUE dev rows as training tasks with their own names."""

from __future__ import annotations

from collections import Counter

import pytest

from bam.data.load import load_examples
from bam.report.tables import format_table
from bam.tasks import GLUE_TASKS, POOL_TASKS, get_task
from bam.tasks.metrics import bam_average, glue_average
from bam.tasks.spec import HashPart


def _labels(task_name: str, split: str) -> dict[str, int]:
    task = get_task(task_name)
    examples = load_examples(task, split)
    assert examples.labels is not None
    return {task.labels[i]: n for i, n in Counter(examples.labels.tolist()).items()}


@pytest.mark.parametrize("name", sorted(POOL_TASKS))
def test_each_split_has_the_rows_the_table_expects(name: str) -> None:
    task = get_task(name)
    assert set(task.expected_rows) == set(task.splits)
    for split, rows in task.expected_rows.items():
        assert len(load_examples(task, split)) == rows


def test_labels_are_read_by_name_as_the_manifest_counts_them() -> None:
    # resources/glue-extra/MANIFEST.md: matched 3479/3123/3213, mismatched 3463/3129/3240.
    assert _labels("mnli-pool", "train") == {"entailment": 3463, "neutral": 3129, "contradiction": 3240}
    assert _labels("mnli-pool", "dev") == {"entailment": 3479, "neutral": 3123, "contradiction": 3213}
    train, dev = _labels("qnli-pool", "train"), _labels("qnli-pool", "dev")
    assert {k: train[k] + dev[k] for k in train} == {"entailment": 2702, "not_entailment": 2761}


def test_the_qnli_cut_is_fixed_disjoint_and_by_question(tmp_path) -> None:
    task = get_task("qnli-pool")
    train, dev = load_examples(task, "train"), load_examples(task, "dev")
    assert not set(train.ids) & set(dev.ids)
    assert len(set(train.ids) | set(dev.ids)) == 5463  # every row of QNLI dev, once
    assert not set(train.texts[0]) & set(dev.texts[0])  # no question on both sides
    # The same rows whatever the data folder, and pinned: a change of the hash would show here.
    again = load_examples(task, "dev", tmp_path)
    assert again.ids == dev.ids and again.fingerprint() == dev.fingerprint()
    assert dev.ids[:5] == ["5", "10", "19", "21", "22"]


def test_a_hash_part_and_its_complement_split_every_value() -> None:
    held, rest = (HashPart("index", "salt", 20, held_out=flag) for flag in (True, False))
    values = [str(i) for i in range(1000)]
    assert all(held.keeps(v) != rest.keeps(v) for v in values)
    assert 150 < sum(held.keeps(v) for v in values) < 250


def test_pools_are_named_as_pools_and_never_as_glue_tasks() -> None:
    for name, task in POOL_TASKS.items():
        assert "pool" in task.display and name not in GLUE_TASKS
        assert task.test_splits == () and task.submission_files == {} and task.hub is None
    # The official tasks still read the official files, from the data folder.
    mnli = get_task("MNLI")
    assert mnli.name == "mnli" and mnli.root is None and mnli.splits["train"].path == "MNLI/train.tsv"
    assert get_task("qnli").splits["dev"].path == "QNLI/dev.tsv" and get_task("qnli").root is None


def test_pools_count_in_the_bam_average_but_not_in_glue_s() -> None:
    scores = {"rte": 60.0, "mnli-pool": 70.0, "qnli-pool": 80.0}
    assert bam_average(scores) == pytest.approx(70.0)
    assert glue_average(scores) == pytest.approx(60.0)


def test_a_results_table_names_the_pools() -> None:
    table = format_table({"bam": {"rte": 60.0, "mnli-pool": 70.0, "qnli-pool": 80.0, "avg": 70.0}})
    header = table.splitlines()[0]
    assert header == "| method | RTE | MNLI-pool (dev-m) | QNLI-pool (held-out) | avg |"
    assert "| MNLI |" not in table and "| QNLI |" not in table
