"""GLUE submission zip: file names, headers, ids, allowed values, clipping and the missing list."""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bam.data.load import default_data_dir
from bam.errors import BamError
from bam.inference.predict import Predictor
from bam.inference.submit import _missing_test_file, write_submission
from bam.tasks import GLUE_TASKS, get_task
from tests import helpers
from tests.helpers import save_tiny_model

FIXTURES = helpers.FIXTURES / "glue_min"
VENDORED_HEADS = {"RTE": 20, "STS-B": 20, "CoLA": 20}  # lines copied (header included)
OFFICIAL_NAMES = [
    "CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv",
    "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv",
]  # fmt: skip


def _read_tsv(text: str) -> list[list[str]]:
    return list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Official-format test files: heads of the vendored RTE/STS-B/CoLA plus MNLI, QQP, QNLI, AX minis."""
    root = tmp_path_factory.mktemp("glue")
    for folder, lines in VENDORED_HEADS.items():
        text = (default_data_dir() / folder / "test.tsv").read_text(encoding="utf-8")
        (root / folder).mkdir()
        (root / folder / "test.tsv").write_text("".join(text.splitlines(True)[:lines]), encoding="utf-8")
    for folder in ("MNLI", "QQP", "QNLI", "diagnostic"):
        shutil.copytree(FIXTURES / folder, root / folder)
    return root


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Predictor:
    folder = save_tiny_model(
        tmp_path_factory.mktemp("m") / "model", ["rte", "stsb", "cola", "mnli", "qqp", "wnli"]
    )
    predictor = Predictor.load(folder, device="cpu")
    # Stretch the STS-B head linearly so its test scores span [-2, 7]: clipping must show.
    pairs = [(r["sentence1"], r["sentence2"]) for r in _test_rows(data_dir / "STS-B" / "test.tsv")]
    scores = np.array([a["score"] for a in predictor.predict("stsb", pairs)])
    scale = 9.0 / (scores.max() - scores.min())
    with torch.no_grad():
        linear = predictor.model.heads["stsb"][1]
        linear.weight.mul_(scale)
        linear.bias.mul_(scale).add_(-2.0 - scale * scores.min())
    return predictor


def _test_rows(path: Path) -> list[dict[str, str]]:
    rows = _read_tsv(path.read_text(encoding="utf-8"))
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_official_file_names() -> None:
    """The task table names every file of a complete GLUE submission, in the official spelling."""
    names = [task.submission_files[split] for task in GLUE_TASKS.values() for split in task.test_splits]
    assert names == OFFICIAL_NAMES


def test_submission_files_and_missing_list(predictor: Predictor, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "glue.zip"
    report = write_submission(None, out, data_dir, predictor=predictor)  # type: ignore[arg-type]
    assert report["written"] == [
        "CoLA.tsv",
        "STS-B.tsv",
        "QQP.tsv",
        "MNLI-m.tsv",
        "MNLI-mm.tsv",
        "RTE.tsv",
        "AX.tsv",
    ]
    missing = {m["file"]: m["reason"] for m in report["missing"]}
    assert set(missing) == {"SST-2.tsv", "MRPC.tsv", "QNLI.tsv", "WNLI.tsv"}
    assert missing["QNLI.tsv"] == "model has no qnli head"  # its test file exists
    assert missing["SST-2.tsv"] == "model has no sst2 head"
    assert missing["WNLI.tsv"].startswith("no test file (WNLI/test.tsv")  # its head exists
    assert set(report["written"]) | set(missing) == set(OFFICIAL_NAMES)

    sources = {
        "CoLA.tsv": ("cola", "CoLA/test.tsv", "index"),
        "STS-B.tsv": ("stsb", "STS-B/test.tsv", "index"),
        "QQP.tsv": ("qqp", "QQP/test.tsv", "id"),
        "MNLI-m.tsv": ("mnli", "MNLI/test_matched.tsv", "index"),
        "MNLI-mm.tsv": ("mnli", "MNLI/test_mismatched.tsv", "index"),
        "RTE.tsv": ("rte", "RTE/test.tsv", "index"),
        "AX.tsv": ("ax", "diagnostic/diagnostic.tsv", "index"),
    }
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == sorted(report["written"])
        for name, (task_name, test_file, id_column) in sources.items():
            task = get_task(task_name)
            test_rows = _test_rows(data_dir / test_file)
            rows = _read_tsv(archive.read(name).decode("utf-8"))
            assert rows[0] == ["index", "prediction"], name
            assert len(rows) - 1 == len(test_rows) > 0, name
            assert [r[0] for r in rows[1:]] == [t[id_column] for t in test_rows], name
            values = [r[1] for r in rows[1:]]
            texts = [tuple(t[c] for c in task.text_columns) for t in test_rows]
            texts_arg = [t[0] for t in texts] if len(task.text_columns) == 1 else texts
            answers = predictor.predict(task_name, texts_arg)
            if task.kind == "regression":
                scores = np.array([a["score"] for a in answers])
                assert (scores < 0).any() and (scores > 5).any() and ((scores > 0) & (scores < 5)).any()
                assert all(len(v.split(".")[1]) == 3 for v in values)
                assert np.allclose([float(v) for v in values], np.clip(scores, 0, 5), atol=5e-4)
            else:
                assert set(values) <= set(task.labels), name
                assert values == [a["label"] for a in answers], name


def test_value_spellings(predictor: Predictor, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "glue.zip"
    write_submission(None, out, data_dir, predictor=predictor)  # type: ignore[arg-type]
    allowed = {
        "RTE.tsv": {"entailment", "not_entailment"},
        "MNLI-m.tsv": {"entailment", "neutral", "contradiction"},
        "AX.tsv": {"entailment", "neutral", "contradiction"},
        "CoLA.tsv": {"0", "1"},
        "QQP.tsv": {"0", "1"},
    }
    with zipfile.ZipFile(out) as archive:
        for name, values in allowed.items():
            assert {r[1] for r in _read_tsv(archive.read(name).decode())[1:]} <= values, name


def test_nothing_to_submit_writes_nothing(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "model", ["sst2"])
    out = tmp_path / "glue.zip"
    with pytest.raises(BamError, match=r"nothing to submit .*SST-2.tsv: no test file"):
        write_submission(folder, out, tmp_path / "empty")
    assert not out.exists()


def test_builtin_data_reasons() -> None:
    assert _missing_test_file(get_task("rte"), "test", None) is None
    assert _missing_test_file(get_task("qnli"), "test", None) == (
        "no test file (QNLI/test.tsv not in bam's built-in data)"
    )
