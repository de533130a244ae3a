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


# ----------------------------------------------------------------------------- every head in one pass


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pair heads only (one pass can serve them all); qqp reads other columns than rte and stsb."""
    return save_tiny_model(tmp_path_factory.mktemp("pairs") / "model", ["rte", "stsb", "qqp"], seed=1)


@pytest.fixture(scope="module")
def pairs(pairs_dir: Path) -> Predictor:
    return Predictor.load(pairs_dir, device="cpu")


def _values(answer: dict) -> list[float]:
    return [answer["score"]] if "score" in answer else list(answer["probabilities"].values())


def _assert_same(together: list[dict], alone: dict[str, list[dict]]) -> None:
    """Each head's answers in ``together`` equal that head's answers alone, within 1e-5."""
    for head, rows in alone.items():
        assert len(rows) == len(together)
        for joint, single in zip(together, rows, strict=True):
            assert joint[head].keys() == single.keys() - {"id"}
            assert joint[head].get("label") == single.get("label")
            assert np.allclose(_values(joint[head]), _values(single), atol=1e-5, rtol=0)


def test_all_heads_equal_each_head_alone(pairs: Predictor) -> None:
    together = pairs.predict_all(PAIRS, batch_size=2)
    assert [list(row) for row in together] == [["rte", "stsb", "qqp"]] * len(PAIRS)
    _assert_same(together, {head: pairs.predict(head, PAIRS) for head in pairs.tasks})
    assert pairs.predict("all", PAIRS, batch_size=2) == together  # the same batches: the same numbers
    some = pairs.predict_all(PAIRS, heads=["stsb", "rte"])
    assert [list(row) for row in some] == [["stsb", "rte"]] * len(PAIRS)
    _assert_same(some, {head: pairs.predict(head, PAIRS) for head in ("stsb", "rte")})
    # a task name or alias asks for its head, and the head keeps its own name in the output
    assert list(pairs.predict("STS-B,rte", PAIRS)[0]) == ["stsb", "rte"]


def test_all_heads_file_equals_single_head_files(pairs_dir: Path, pairs: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.tsv"
    src.write_text(
        "index\tsentence1\tsentence2\n" + "".join(f"{7 + i}\t{a}\t{b}\n" for i, (a, b) in enumerate(PAIRS)),
        encoding="utf-8",
    )
    assert predict_file(pairs_dir, "all", str(src), str(tmp_path / "all.jsonl"), predictor=pairs) == 3
    together = _read_jsonl((tmp_path / "all.jsonl").read_text())
    assert [row["id"] for row in together] == ["7", "8", "9"]
    alone = {}
    for head in pairs.tasks:
        out = str(tmp_path / f"{head}.jsonl")  # qqp alone reads its own columns unless told
        predict_file(pairs_dir, head, str(src), out, text_columns=["sentence1", "sentence2"], predictor=pairs)
        alone[head] = _read_jsonl((tmp_path / f"{head}.jsonl").read_text())
    _assert_same(together, alone)


def test_all_heads_read_the_columns_one_of_them_names(pairs: Predictor, tmp_path: Path) -> None:
    """One tokenization feeds every head: rows may use any head's own columns (here qqp's), the
    generic keys, or --text-column; rows that have none of them are named."""
    reference = pairs.predict_all(PAIRS)
    for columns in (("question1", "question2"), ("text_a", "text_b"), ("premise", "hypothesis")):
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(dict(zip(columns, p, strict=True))) + "\n" for p in PAIRS))
        given = list(columns) if columns[0] == "premise" else None
        predict_file("", "all", str(src), str(tmp_path / "out.jsonl"), text_columns=given, predictor=pairs)
        got = _read_jsonl((tmp_path / "out.jsonl").read_text())
        _assert_same(got, {head: [row[head] for row in reference] for head in pairs.tasks})
    with pytest.raises(BamError, match=r"in\.jsonl line 1: missing column\(s\) 'sentence1', 'sentence2'"):
        predict_file("", "all", str(src), None, predictor=pairs)


def test_heads_that_take_other_inputs_are_refused(predictor: Predictor, pairs: Predictor) -> None:
    """rte reads pairs and cola single texts: one tokenization cannot feed both."""
    mixed = r"heads rte,stsb take pairs and cola single texts.*--task rte,stsb, then --task cola"
    with pytest.raises(BamError, match=mixed):
        predictor.predict("all", PAIRS)
    with pytest.raises(BamError, match=mixed):
        predictor.predict_all(["one text"])
    with pytest.raises(BamError, match="task rte takes pairs"):
        predictor.predict_all(["one text"], heads=["rte", "stsb"])
    assert list(predictor.predict_all(["one text"], heads=["cola"])[0]) == ["cola"]
    with pytest.raises(BamError, match="head rte asked for twice"):
        pairs.predict("rte,RTE", PAIRS)
    with pytest.raises(BamError, match="an empty head name"):
        pairs.predict("rte,", PAIRS)
    with pytest.raises(BamError, match="no head for task 'cola'"):
        pairs.predict_all(PAIRS, heads=["rte", "cola"])


def test_cli_task_all_writes_every_head_and_refuses_mixed_heads(
    model_dir: Path, pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from bam.cli.app import main

    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text_a": a, "text_b": b}) + "\n" for i, (a, b) in enumerate(PAIRS)
        )
    )
    out = tmp_path / "out.jsonl"
    assert (
        main(
            ["predict", "--model", str(pairs_dir), "--task", "all", "--input", str(src), "--output", str(out)]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == f"3 predictions written to {out}"
    rows = _read_jsonl(out.read_text())
    assert [sorted(row) for row in rows] == [["id", "qqp", "rte", "stsb"]] * 3
    assert rows[0]["id"] == "r0" and set(rows[0]["stsb"]) == {"score"}
    assert sum(rows[0]["rte"]["probabilities"].values()) == pytest.approx(1.0)
    assert main(["predict", "--model", str(model_dir), "--task", "all", "--input", str(src)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("bam: error: task 'all': heads rte,stsb take pairs and cola single texts")


# ----------------------------------------------------------------------------- streaming


def _pairs_file(path: Path, rows: int, bad_line: int | None = None) -> None:
    """A TSV of ``rows`` pairs with no id column; ``bad_line`` (a file line) lacks its second text."""
    lines = ["sentence1\tsentence2"]
    for i in range(rows):
        a, b = PAIRS[i % len(PAIRS)]
        lines.append(f"{a} {i}" if len(lines) + 1 == bad_line else f"{a} {i}\t{b}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_chunked_run_equals_an_unchunked_one(pairs: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.tsv"
    _pairs_file(src, 11)
    for task in ("rte", "all"):
        whole, chunked = tmp_path / f"whole-{task}.jsonl", tmp_path / f"chunked-{task}.jsonl"
        assert predict_file("", task, str(src), str(whole), predictor=pairs) == 11
        assert predict_file("", task, str(src), str(chunked), predictor=pairs, chunk_rows=4) == 11
        got, want = _read_jsonl(chunked.read_text()), _read_jsonl(whole.read_text())
        assert [r["id"] for r in got] == [str(i) for i in range(11)]  # row numbers run on across chunks
        for a, b in zip(got, want, strict=True):
            answers = [(a, b)] if task == "rte" else [(a[h], b[h]) for h in pairs.tasks]
            for x, y in answers:
                assert x.get("label") == y.get("label")
                assert np.allclose(_values(x), _values(y), atol=1e-5, rtol=0)


def test_input_is_read_as_it_is_answered(pairs: Predictor) -> None:
    """The first answers come before the input is read to its end: memory does not grow with it."""
    from bam.inference.predict_input import RowSource

    pulled = []

    def rows():
        for i in range(1_000_000):
            pulled.append(i)
            yield i + 1, {"text_a": f"sentence {i}", "text_b": "another"}

    answers = pairs.iter_predict("all", RowSource(rows(), "<gen>"), chunk_rows=8)
    first = [next(answers) for _ in range(10)]
    assert [row["id"] for row in first] == [str(i) for i in range(10)]
    assert len(pulled) == 16  # two chunks, nothing more


def test_an_error_late_in_the_input_leaves_no_output(
    pairs: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks before the bad row were answered and written to a temporary file: it is removed, and
    a previous output stays as it was."""
    src = tmp_path / "in.tsv"
    _pairs_file(src, 40, bad_line=37)
    out = tmp_path / "out" / "pred.jsonl"
    with pytest.raises(BamError, match=r"in\.tsv line 37: 1 fields, expected 2"):
        predict_file("", "all", str(src), str(out), predictor=pairs, chunk_rows=4)
    assert not out.exists() and list(out.parent.iterdir()) == []
    out.write_text("earlier predictions\n")
    with pytest.raises(BamError, match="line 37"):
        predict_file("", "rte", str(src), str(out), predictor=pairs, chunk_rows=4)
    assert out.read_text() == "earlier predictions\n" and len(list(out.parent.iterdir())) == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO(src.read_text()))
    with pytest.raises(BamError, match="<stdin> line 37"):
        predict_file("", "rte", "-", None, input_format="tsv", predictor=pairs, chunk_rows=4)
    assert capsys.readouterr().out == ""  # stdout is written only once every row is answered


def test_a_write_that_fails_is_named(pairs: Predictor, tmp_path: Path) -> None:
    src = tmp_path / "in.tsv"
    _pairs_file(src, 3)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BamError, match=r"file/out\.jsonl: cannot write"):
        predict_file("", "rte", str(src), str(blocker / "out.jsonl"), predictor=pairs)
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(BamError, match=r"folder\.jsonl: cannot write \(Is a directory\)"):
        predict_file("", "rte", str(src), str(tmp_path / "folder.jsonl"), predictor=pairs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.jsonl", "in.tsv"]


# ----------------------------------------------------------------------------- Python tables


def test_tables_are_answered_as_files_are(pairs: Predictor, tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    records = [{"idx": 10 + i, "sentence1": a, "sentence2": b} for i, (a, b) in enumerate(PAIRS)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    predict_file("", "all", str(src), str(tmp_path / "out.jsonl"), predictor=pairs)
    expected = _read_jsonl((tmp_path / "out.jsonl").read_text())
    assert [r["id"] for r in expected] == ["10", "11", "12"]
    tables = {
        "Dataset": datasets.Dataset.from_list(records),
        "DataFrame": pd.DataFrame(records),
        "dicts": records,
    }
    for name, table in tables.items():
        got = pairs.predict_all(table)
        assert [r["id"] for r in got] == ["10", "11", "12"], name
        _assert_same(got, {h: [r[h] for r in expected] for h in pairs.tasks})
        single = pairs.predict("rte", table)
        assert [r["label"] for r in single] == [r["rte"]["label"] for r in expected], name
        assert next(pairs.iter_predict("stsb", table)).keys() == {"id", "score"}


def test_table_columns_and_cells_are_checked_like_files(pairs: Predictor) -> None:
    import datasets
    import pandas as pd

    frame = pd.DataFrame({"premise": ["a", "b", None], "hypothesis": ["c", "d", float("nan")]})
    got = pairs.predict("rte", frame, text_columns=["premise", "hypothesis"])
    assert [r["id"] for r in got] == ["0", "1", "2"]  # no id column: row numbers
    empty = pairs.predict("rte", [("", "")])[0]  # a missing cell reads as empty
    assert got[2]["probabilities"] == pytest.approx(empty["probabilities"], abs=1e-5)
    with pytest.raises(BamError, match=r"DataFrame row 0: missing column\(s\) 'sentence1', 'sentence2'"):
        pairs.predict("rte", frame)
    with pytest.raises(BamError, match=r"task rte takes pairs .*, got text column\(s\) premise"):
        pairs.predict("rte", frame, text_columns=["premise"])
    ragged = [{"text_a": "a", "text_b": "b"}, {"text_a": "a", "text_b": "b"}, {"text_a": "only"}]
    with pytest.raises(BamError, match=r"rows row 2: missing column\(s\) 'sentence1', 'sentence2'"):
        pairs.predict("rte", ragged)
    with pytest.raises(BamError, match=r"rows\[1\]: expected a dict"):
        pairs.predict("rte", [{"text_a": "a", "text_b": "b"}, "loose text"])
    nested = datasets.Dataset.from_list([{"text_a": "a", "text_b": ["x", "y"]}])
    with pytest.raises(BamError, match=r"Dataset row 0: column 'text_b' holds list, not text"):
        pairs.predict("rte", nested)
    with pytest.raises(BamError, match=r"DatasetDict holds several splits \('test'\)"):
        pairs.predict("rte", datasets.DatasetDict({"test": nested}))
    with pytest.raises(BamError, match="text_columns name a table's columns"):
        pairs.predict("rte", PAIRS, text_columns=["a", "b"])
    with pytest.raises(BamError, match="cannot read rows from a tuple"):
        list(pairs.iter_predict("rte", ("a", "b")))
