"""Teacher outputs on disk: round trip, every provenance mismatch refused, ensembles."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from scipy.special import softmax

from bam.distill import store
from bam.distill.store import (
    average_teachers,
    load_teacher_outputs,
    metadata_checksum,
    read_teacher_metadata,
    save_teacher_outputs,
)
from bam.errors import BamError

FP = "a" * 64
ROWS = 6


def _save(path: Path, outputs: np.ndarray | None = None, **overrides) -> np.ndarray:
    if outputs is None:
        outputs = np.random.default_rng(0).normal(size=(ROWS, 3)).astype(np.float32)
    kwargs = dict(
        task="rte",
        split="train",
        examples_fingerprint=FP,
        teacher_hash="teacher1",
        tokenizer="bert-base-uncased",
        max_length=128,
        kind="logits",
    )
    kwargs.update(overrides)
    save_teacher_outputs(path, outputs, **kwargs)
    return outputs


def _load(path: Path, **overrides) -> np.ndarray:
    kwargs = dict(task="rte", split="train", examples_fingerprint=FP, rows=ROWS, teacher_hash="teacher1")
    kwargs.update(overrides)
    return load_teacher_outputs(path, **kwargs)


def test_round_trip_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t" / "rte.safetensors"
    outputs = _save(path)
    loaded = _load(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, outputs)
    np.testing.assert_array_equal(_load(path, teacher_hash=None), outputs)
    meta = read_teacher_metadata(path)
    assert meta["task"] == "rte" and meta["split"] == "train" and meta["rows"] == str(ROWS)
    assert meta["tokenizer"] == "bert-base-uncased" and meta["max_length"] == "128"
    assert meta["kind"] == "logits" and meta["examples_fingerprint"] == FP
    assert meta["outputs_sha256"] == hashlib.sha256(outputs.astype("<f4").tobytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["rte.safetensors"]  # no temp files left


def test_regression_scores_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "stsb.safetensors"
    scores = np.linspace(0, 5, ROWS)  # float64 in, float32 stored
    _save(path, scores, task="stsb", kind="score")
    np.testing.assert_allclose(_load(path, task="stsb"), scores, rtol=1e-6)


def test_plain_safetensors_layout_no_pickle(tmp_path: Path) -> None:
    path = tmp_path / "rte.safetensors"
    outputs = _save(path)
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert header["outputs"]["dtype"] == "F32" and header["outputs"]["shape"] == [ROWS, 3]
    assert header["__metadata__"]["format"] == "bam-teacher-outputs"
    assert raw[8 + header_len :] == outputs.astype("<f4").tobytes()
    source = Path(store.__file__).read_text()
    assert "import pickle" not in source and "torch.save" not in source and "np.save(" not in source


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"task": "mrpc"}, r"made for task 'rte', not 'mrpc'"),
        ({"split": "dev"}, r"made for split 'train', not 'dev'"),
        ({"rows": ROWS + 1}, rf"have {ROWS} rows .* expected {ROWS + 1}"),
        ({"examples_fingerprint": "b" * 64}, r"other data or another row order"),
        ({"teacher_hash": "teacher2"}, r"made for teacher 'teacher1', not 'teacher2'"),
    ],
)
def test_mismatch_refused(tmp_path: Path, override: dict, pattern: str) -> None:
    path = tmp_path / "rte.safetensors"
    _save(path)
    with pytest.raises(BamError, match=pattern) as info:
        _load(path, **override)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BamError, match=r"nope\.safetensors not found"):
        _load(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("cut", [1, 10, 200])
def test_truncated_file_refused(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "rte.safetensors"
    _save(path)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(BamError, match="not a readable safetensors file"):
        _load(path)


def test_garbage_and_foreign_files_refused(tmp_path: Path) -> None:
    path = tmp_path / "rte.safetensors"
    path.write_bytes(b"definitely not safetensors")
    with pytest.raises(BamError, match="not a readable safetensors file"):
        _load(path)
    path.write_bytes(safetensors.numpy.save({"outputs": np.zeros((ROWS, 3), np.float32)}))
    with pytest.raises(BamError, match="not bam teacher outputs"):
        _load(path)


def test_corrupted_payload_fails_checksum(tmp_path: Path) -> None:
    path = tmp_path / "rte.safetensors"
    _save(path)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # flip one bit of the last float's mantissa
    path.write_bytes(bytes(raw))
    with pytest.raises(BamError, match="checksum"):
        _load(path)


def test_non_finite_outputs_refused(tmp_path: Path) -> None:
    outputs = np.zeros((ROWS, 3), np.float32)
    outputs[2, 1] = np.nan
    with pytest.raises(BamError, match="NaN"):
        _save(tmp_path / "a.safetensors", outputs)
    # A file written by something else, with a valid checksum over NaN outputs.
    path = tmp_path / "rte.safetensors"
    _save(path)
    meta = read_teacher_metadata(path)
    meta["outputs_sha256"] = hashlib.sha256(outputs.tobytes()).hexdigest()
    meta["metadata_sha256"] = metadata_checksum(meta)
    path.write_bytes(safetensors.numpy.save({"outputs": outputs}, metadata=meta))
    with pytest.raises(BamError, match="NaN or infinite"):
        _load(path)


def test_wrong_shape_for_kind_refused(tmp_path: Path) -> None:
    with pytest.raises(BamError, match="shape"):
        _save(tmp_path / "a.safetensors", np.zeros(ROWS, np.float32), kind="logits")
    with pytest.raises(BamError, match="shape"):
        _save(tmp_path / "a.safetensors", np.zeros((ROWS, 1), np.float32), kind="score")
    with pytest.raises(BamError, match="unknown teacher output kind"):
        _save(tmp_path / "a.safetensors", kind="probs")


def test_average_classification_by_hand() -> None:
    # Teacher A: p = [1/2, 1/2]; teacher B: p = [3/4, 1/4]; mean = [5/8, 3/8].
    a = np.array([[0.0, 0.0]])
    b = np.array([[np.log(3.0), 0.0]])
    result = average_teachers([a, b], "logits")
    np.testing.assert_allclose(softmax(result, axis=-1), [[0.625, 0.375]], rtol=1e-6)
    np.testing.assert_allclose(np.exp(result), [[0.625, 0.375]], rtol=1e-6)  # log-probabilities


def test_average_classification_random() -> None:
    rng = np.random.default_rng(1)
    teachers = [rng.normal(scale=3, size=(20, 3)).astype(np.float32) for _ in range(4)]
    result = average_teachers(teachers, "classification")
    assert result.shape == (20, 3) and result.dtype == np.float32
    expected = np.mean([softmax(t, axis=-1) for t in teachers], axis=0)
    np.testing.assert_allclose(softmax(result, axis=-1), expected, rtol=1e-5)
    single = average_teachers(teachers[:1], "logits")
    np.testing.assert_allclose(softmax(single, axis=-1), softmax(teachers[0], axis=-1), rtol=1e-5)


def test_average_regression_and_errors() -> None:
    result = average_teachers([np.array([1.0, 2.0]), np.array([3.0, 6.0])], "score")
    np.testing.assert_allclose(result, [2.0, 4.0])
    np.testing.assert_allclose(average_teachers([np.array([1.0]), np.array([2.0])], "regression"), [1.5])
    with pytest.raises(BamError, match="different shapes"):
        average_teachers([np.zeros((3, 2)), np.zeros((4, 2))], "logits")
    with pytest.raises(BamError, match="empty"):
        average_teachers([], "logits")
    with pytest.raises(BamError, match="do not fit kind"):
        average_teachers([np.zeros(3)], "logits")
