"""Predictor and predict_file: answers equal an unbatched forward pass; bad input refused clearly."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax

from bam.errors import BamError
from bam.inference.predict import Predictor, predict_file
from bam.tasks import get_task
from tests.helpers import PAIRS, save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training-output-style folder: the model lives in run/model."""
    run = tmp_path_factory.mktemp("run")
    save_tiny_model(run / "model", ["rte", "stsb", "cola"])
    return run


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.load(model_dir, device="cpu")


def _one_by_one(predictor: Predictor, head: str, rows: list[tuple[str, ...]]) -> np.ndarray:
    """Reference outputs: each row alone through the model, no padding, no batching, no sorting."""
    outs = []
    with torch.no_grad():
        for row in rows:
            enc = predictor.tokenizer(*row, return_tensors="pt")
            outs.append(predictor.model(**enc)[head][0].numpy())
    return np.stack(outs)


def test_load_accepts_model_folder_and_training_output(model_dir: Path, predictor: Predictor) -> None:
    assert predictor.tasks == ["rte", "stsb", "cola"]
    assert Predictor.load(model_dir / "model", device="cpu").tasks == predictor.tasks
    with pytest.raises(BamError, match="not a bam model folder"):
        Predictor.load(model_dir.parent, device="cpu")


def test_classification_matches_unbatched_forward(predictor: Predictor) -> None:
    rows = predictor.predict("rte", PAIRS, batch_size=2)
    probs = softmax(_one_by_one(predictor, "rte", PAIRS), axis=-1)
    labels = get_task("rte").labels
    for row, p in zip(rows, probs, strict=True):
        assert list(row["probabilities"]) == list(labels)
        assert np.allclose(list(row["probabilities"].values()), p, atol=1e-5)
        assert row["label"] == labels[int(p.argmax())]


def test_regression_and_single_text(predictor: Predictor) -> None:
    scores = [r["score"] for r in predictor.predict("STS-B", PAIRS)]
    assert np.allclose(scores, _one_by_one(predictor, "stsb", PAIRS), atol=1e-5)
    singles = [(a,) for a, _ in PAIRS]
    cola = predictor.predict("cola", [a for (a,) in singles])
    expected = softmax(_one_by_one(predictor, "cola", singles), axis=-1)
    assert [r["label"] for r in cola] == [("0", "1")[int(i)] for i in expected.argmax(-1)]
    assert predictor.predict("rte", []) == []


def test_unknown_head_and_wrong_arity_are_refused(predictor: Predictor) -> None:
    with pytest.raises(BamError, match=r"no head for task 'ax' \(head 'mnli'\); its tasks: rte, stsb, cola"):
        predictor.predict("ax", PAIRS)
    with pytest.raises(BamError, match="its tasks: rte, stsb, cola"):
        predictor.predict("qqp", PAIRS)
    with pytest.raises(BamError, match="task rte takes pairs"):
        predictor.predict("rte", ["one text"])
    with pytest.raises(BamError, match=r"texts\[1\]"):
        predictor.predict("rte", [("a", "b"), ("a", "b", "c")])
    with pytest.raises(BamError, match="not one string"):
        predictor.predict("cola", "just a string")  # type: ignore[arg-type]


def _read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_predict_file_tsv_matches_predictor(model_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.tsv"
    lines = ["index\tsentence1\tsentence2"] + [f"{10 + i}\t{a}\t{b}" for i, (a, b) in enumerate(PAIRS)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "pred.jsonl"
    assert predict_file(model_dir, "RTE", str(src), str(out)) == len(PAIRS)
    got = _read_jsonl(out.read_text())
    assert [r["id"] for r in got] == ["10", "11", "12"]
    expected = predictor.predict("rte", PAIRS)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    for row, want in zip(got, expected, strict=True):  # on a GPU the kernels vary with the batch's shape
        assert row.keys() == {"id", *want}
        assert row["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    assert [p.name for p in out.parent.iterdir()] == ["pred.jsonl"]  # no temporary files left


def test_predict_file_jsonl_stdin_generic_keys(
    model_dir: Path, predictor: Predictor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    rows = [{"id": f"q{i}", "text_a": a, "text_b": b} for i, (a, b) in enumerate(PAIRS)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(r) + "\n" for r in rows)))
    assert predict_file(model_dir, "stsb", "-", None, input_format="jsonl", predictor=predictor) == 3
    got = _read_jsonl(capsys.readouterr().out)
    assert [r["id"] for r in got] == ["q0", "q1", "q2"]
    assert np.allclose([r["score"] for r in got], _one_by_one(predictor, "stsb", PAIRS), atol=1e-5)


def test_stdin_bytes_that_are_not_utf8_are_named(
    model_dir: Path, predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a C/POSIX locale Python's stdin passes bad bytes on as surrogates (the tokenizer then
    failed with a TypeError); a BOM is dropped as in files."""

    def stdin(data: bytes) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")

    monkeypatch.setattr(sys, "stdin", stdin(b"index\tsentence1\tsentence2\n1\tcaf\xe9\tb\n"))
    with pytest.raises(BamError, match="<stdin>: not UTF-8 text"):
        predict_file(model_dir, "rte", None, None, input_format="tsv", predictor=predictor)
    monkeypatch.setattr(sys, "stdin", stdin("\ufeffindex\tsentence1\tsentence2\n1\tcafé\tb\n".encode()))
    assert predict_file(model_dir, "rte", None, None, input_format="tsv", predictor=predictor) == 1


def test_predict_file_csv_with_own_columns(model_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["premise", "hypothesis"])
        writer.writerows([(a, b) for a, b in PAIRS] + [('He said "hi, there".', "He spoke.")])
    out = tmp_path / "out.jsonl"
    n = predict_file(model_dir, "rte", str(src), str(out), text_columns=["premise", "hypothesis"])
    got = _read_jsonl(out.read_text())
    assert n == 4 and [r["id"] for r in got] == ["0", "1", "2", "3"]  # no id column: row numbers
    expected = predictor.predict("rte", [*PAIRS, ('He said "hi, there".', "He spoke.")])
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    with pytest.raises(BamError, match=r"task rte takes pairs .*, got text column\(s\) premise"):
        predict_file(model_dir, "rte", str(src), str(out), text_columns=["premise"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            '{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "a"\n',
            r"bad\.jsonl line 2: invalid JSON",
        ),
        (
            "gap.jsonl",
            '{"sentence1": "a", "sentence2": "b"}\n\n{"sentence1": "a", "other": "b"}\n',
            r"gap\.jsonl line 3: missing column\(s\) 'sentence2'",
        ),
        ("short.tsv", "sentence1\tsentence2\na\tb\nonly-one\n", r"short\.tsv line 3: 1 fields, expected 2"),
        ("in.txt", "a\n", r"in\.txt: cannot tell the format"),
    ],
)
def test_bad_input_names_file_and_line(
    model_dir: Path, predictor: Predictor, tmp_path: Path, name: str, content: str, message: str
) -> None:
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(BamError, match=message):
        predict_file(model_dir, "rte", str(src), str(out), predictor=predictor)
    assert not out.exists()


def test_stdin_needs_format_and_missing_file(model_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(BamError, match="stdin needs the input format"):
        predict_file(model_dir, "rte", None, None, predictor=predictor)
    with pytest.raises(BamError, match="file not found"):
        predict_file(model_dir, "rte", str(tmp_path / "nope.tsv"), None, predictor=predictor)
    with pytest.raises(BamError, match="its tasks: rte, stsb, cola"):
        predict_file(model_dir, "mnli", str(tmp_path / "nope.tsv"), None, predictor=predictor)


def test_import_bam_stays_light() -> None:
    code = "import sys, bam; assert 'torch' not in sys.modules and 'bam.inference.predict' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    import bam

    assert bam.Predictor is Predictor
