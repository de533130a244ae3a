"""The readers on the real vendored GLUE files and on every kind of bad input.

Expected row and label counts are the published split statistics recorded in MANIFEST.md, not
numbers taken from the implementation.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bam.data.load import default_data_dir, load_examples
from bam.data.readers import read_split
from bam.errors import BamError
from bam.tasks import get_task
from tests import helpers

# task -> split -> {rows, labels: {label: count} or null when unlabeled/regression}; from MANIFEST.md.
VENDORED = json.loads((helpers.FIXTURES / "vendored_counts.json").read_text())["tasks"]
CASES = [(task, split) for task, splits in VENDORED.items() for split in splits]


@pytest.mark.parametrize(("task_name", "split"), CASES)
def test_vendored_split_rows_and_labels(task_name: str, split: str) -> None:
    task = get_task(task_name)
    rows, labels = VENDORED[task_name][split]["rows"], VENDORED[task_name][split]["labels"]
    examples = load_examples(task, split, None)
    assert len(examples) == rows
    assert all(len(column) == rows for column in examples.texts)
    assert len(examples.texts) == len(task.text_columns)
    assert all(isinstance(text, str) and text for column in examples.texts for text in column)
    if labels is not None:
        counts = Counter(task.labels[i] for i in examples.labels.tolist())
        assert dict(counts) == labels
    elif task.kind == "regression" and split != "test":
        scores = examples.labels
        assert scores.dtype == np.float32 and np.isfinite(scores).all()
        assert scores.min() >= 0.0 and scores.max() <= 5.0
    else:
        assert examples.labels is None


def test_vendored_test_ids_are_the_index_column() -> None:
    examples = load_examples(get_task("rte"), "test", None)
    assert examples.ids[:3] == ["0", "1", "2"] and examples.ids[-1] == "2999"


def test_mrpc_bom_and_quotes_are_read_verbatim() -> None:
    # MRPC/train starts with a BOM and has rows with '"'; QUOTE_NONE keeps them as written.
    raw = (default_data_dir() / "MRPC" / "train.tsv").read_text(encoding="utf-8-sig").splitlines()
    first = raw[1].split("\t")
    examples = load_examples(get_task("mrpc"), "train", None)
    assert examples.texts[0][0] == first[3] and examples.texts[1][0] == first[4]
    quoted = sum('"' in a or '"' in b for a, b in zip(*examples.texts, strict=True))
    assert quoted == sum('"' in line for line in raw[1:])


def test_stsb_scores_equal_the_file_text() -> None:
    lines = (default_data_dir() / "STS-B" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    expected = np.array([float(line.split("\t")[-1]) for line in lines[1:]], dtype=np.float32)
    assert np.array_equal(load_examples(get_task("stsb"), "dev", None).labels, expected)


def test_builtin_data_lacks_mnli_with_a_clear_message() -> None:
    with pytest.raises(BamError, match="not in bam's built-in data"):
        load_examples(get_task("mnli"), "train", None)


# ---------------------------------------------------------------- bad input


def _rte_dir(tmp_path: Path, train: str | bytes) -> Path:
    folder = tmp_path / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.tsv"
    path.write_bytes(train if isinstance(train, bytes) else train.encode("utf-8"))
    return tmp_path


HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BamError, match=r"RTE/train\.tsv: file not found"):
        read_split(get_task("rte"), "train", tmp_path)


def test_missing_column(tmp_path: Path) -> None:
    data = _rte_dir(tmp_path, "index\tsentence1\tsentenc2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(BamError, match=r"train\.tsv line 2: missing column\(s\) 'sentence2'"):
        read_split(get_task("rte"), "train", data)


def test_unknown_label(tmp_path: Path) -> None:
    data = _rte_dir(tmp_path, HEADER + "0\ta\tb\tentailment\n1\tc\td\tneutral\n")
    with pytest.raises(BamError, match=r"train\.tsv line 3: unknown label 'neutral' in column 'label'"):
        read_split(get_task("rte"), "train", data)


def test_labels_are_mapped_by_name_not_position(tmp_path: Path) -> None:
    data = _rte_dir(tmp_path, HEADER + "0\ta\tb\tnot_entailment\n1\tc\td\tentailment\n")
    task = get_task("rte")
    examples = read_split(task, "train", data)
    assert [task.labels[i] for i in examples.labels] == ["not_entailment", "entailment"]


@pytest.mark.parametrize(
    ("score", "problem"),
    [
        ("high", "is not a number"),
        ("nan", "is not finite"),
        ("inf", "is not finite"),
        ("", "is not a number"),
    ],
)
def test_bad_regression_score(tmp_path: Path, score: str, problem: str) -> None:
    folder = tmp_path / "STS-B"
    folder.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain-news\tf\t2012\t1\tnone\tnone\tA man.\tA dog.\t{}\n"
    (folder / "dev.tsv").write_text(header + row.format("2.5") + row.format(score), encoding="utf-8")
    with pytest.raises(BamError, match=rf"dev\.tsv line 3: score '{score}' {problem}"):
        read_split(get_task("stsb"), "dev", tmp_path)


@pytest.mark.parametrize("row", ["1\tc\td\n", "1\tc\td\tentailment\textra\n"])
def test_wrong_field_count(tmp_path: Path, row: str) -> None:
    data = _rte_dir(tmp_path, HEADER + "0\ta\tb\tentailment\n" + row)
    with pytest.raises(BamError, match=r"train\.tsv line 3: \d fields, expected 4"):
        read_split(get_task("rte"), "train", data)


def test_quote_in_a_field_does_not_merge_rows(tmp_path: Path) -> None:
    data = _rte_dir(tmp_path, HEADER + '0\tHe said "yes\tb\tentailment\n1\tc\td "no\tnot_entailment\n')
    examples = read_split(get_task("rte"), "train", data)
    assert examples.texts == (['He said "yes', "c"], ["b", 'd "no'])


def test_non_utf8_file_names_the_real_line(tmp_path: Path) -> None:
    # The bad byte lies beyond the reader's first decoding chunk; the line must still be right.
    good = "".join(f"{i}\t{'word ' * 40}\tb\tentailment\n" for i in range(100))
    bad = b"100\tcaf" + b"\xe9" + b"\tb\tentailment\n"
    data = _rte_dir(tmp_path, HEADER.encode() + good.encode() + bad)
    with pytest.raises(BamError, match=r"train\.tsv: not UTF-8 text \(line 102, byte \d+"):
        read_split(get_task("rte"), "train", data)


@pytest.mark.parametrize("content", ["", HEADER, HEADER + "\n"])
def test_empty_split(tmp_path: Path, content: str) -> None:
    data = _rte_dir(tmp_path, content)
    with pytest.raises(BamError, match=r"train\.tsv: split 'train' of task rte has no rows"):
        read_split(get_task("rte"), "train", data)


def test_unknown_split() -> None:
    with pytest.raises(BamError, match="task 'rte' has no split 'validation'"):
        load_examples(get_task("rte"), "validation", None)


def _jsonl_task(tmp_path: Path, lines: list[str]):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = get_task("rte")
    return dataclasses.replace(
        base,
        name="toy",
        format="jsonl",
        splits={"train": dataclasses.replace(base.splits["train"], path=str(path))},
    )


def test_jsonl_reader(tmp_path: Path) -> None:
    rows = [
        {"sentence1": "a", "sentence2": "b", "label": "entailment", "index": 7},
        {"sentence1": "c", "sentence2": None, "label": "not_entailment", "index": 8},
    ]
    task = _jsonl_task(tmp_path, [json.dumps(r) for r in rows])
    examples = read_split(task, "train", tmp_path)
    assert examples.texts == (["a", "c"], ["b", ""])
    assert examples.labels.tolist() == [0, 1] and examples.ids == ["7", "8"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"sentence1": "c", "label": "entailment"}', r"line 2: missing column\(s\) 'sentence2'"),
        ('{"sentence1": "c", ', r"line 2: invalid JSON"),
        ('["c", "d"]', r"line 2: expected a JSON object"),
        ('{"sentence1": ["c"], "sentence2": "d", "label": "no"}', r"line 2: field 'sentence1' holds a list"),
        ('{"sentence1": "c", "sentence2": {"t": 1}, "label": "no"}', r"line 2: field 'sentence2' holds an"),
    ],
)
def test_bad_jsonl_rows(tmp_path: Path, line: str, message: str) -> None:
    first = json.dumps({"sentence1": "a", "sentence2": "b", "label": "entailment"})
    task = _jsonl_task(tmp_path, [first, line])
    with pytest.raises(BamError, match=r"data\.jsonl " + message):
        read_split(task, "train", tmp_path)
