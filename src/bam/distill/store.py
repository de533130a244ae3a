"""Teacher outputs on a training set, stored as safetensors with their provenance in the metadata.

The student is trained against these outputs row by row, so a file made for another task, split,
data order or teacher would silently teach the wrong thing. Every such mismatch is refused with a
one-line :class:`BamError` naming the file and the field. Files are written atomically; no pickle.

Two checksums are written with each file: ``outputs_sha256`` over the array, and
``metadata_sha256`` over every other metadata field (canonical JSON). Any truncated or flipped
byte fails the safetensors parse or one of them, and the file is refused, never read.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import safetensors
import safetensors.numpy
from scipy.special import logsumexp

from bam.data.examples import Examples
from bam.errors import BamError
from bam.fileio import atomic_write_bytes, fingerprint

FORMAT_VERSION = "2"  # 2: metadata_sha256
TENSOR_KEY = "outputs"
# What a teacher writes for each task kind: logits (rows, num_labels) or scores (rows,).
OUTPUT_KIND = {"classification": "logits", "regression": "score"}
_NDIM = {"logits": 2, "score": 1}
_DAMAGED = "file truncated or corrupted; delete it and re-run the teacher's predict step (bam run does)"


def _outputs_sha256(outputs: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(outputs, dtype="<f4").tobytes()).hexdigest()


def metadata_checksum(metadata: dict[str, str]) -> str:
    """The ``metadata_sha256`` of a teacher-outputs file's metadata (the field itself aside)."""
    return fingerprint({k: v for k, v in metadata.items() if k != "metadata_sha256"}, 64)


def _kind(kind: str) -> str:
    """Accept the store's names ("logits", "score") or a TaskSpec kind ("classification", ...)."""
    resolved = OUTPUT_KIND.get(kind, kind)
    if resolved not in _NDIM:
        valid = ", ".join([*_NDIM, *OUTPUT_KIND])
        raise BamError(f"unknown teacher output kind {kind!r} (valid: {valid})")
    return resolved


def save_teacher_outputs(
    path: str | os.PathLike,
    outputs: np.ndarray,
    *,
    task: str,
    split: str,
    examples_fingerprint: str,
    teacher_hash: str,
    tokenizer: str,
    max_length: int,
    kind: str,
) -> None:
    """Write ``outputs`` (float32 logits ``(rows, labels)`` or scores ``(rows,)``) with provenance."""
    kind = _kind(kind)
    array = np.ascontiguousarray(outputs, dtype=np.float32)
    if array.ndim != _NDIM[kind] or array.shape[0] == 0:
        raise BamError(
            f"teacher outputs for {task}/{split} have shape {array.shape}, "
            f"expected {'(rows, labels)' if kind == 'logits' else '(rows,)'} for kind {kind!r}"
        )
    if not np.isfinite(array).all():
        raise BamError(
            f"teacher outputs for {task}/{split} contain NaN or infinite values; not saving {path}"
        )
    metadata = {
        "format": "bam-teacher-outputs",
        "format_version": FORMAT_VERSION,
        "task": task,
        "split": split,
        "rows": str(array.shape[0]),
        "examples_fingerprint": examples_fingerprint,
        "teacher_hash": teacher_hash,
        "tokenizer": tokenizer,
        "max_length": str(int(max_length)),
        "kind": kind,
        "outputs_sha256": _outputs_sha256(array),
    }
    metadata["metadata_sha256"] = metadata_checksum(metadata)
    atomic_write_bytes(path, safetensors.numpy.save({TENSOR_KEY: array}, metadata=metadata))


def _read(path: str | os.PathLike) -> tuple[dict[str, str], np.ndarray]:
    if not os.path.isfile(path):
        raise BamError(f"teacher outputs {path} not found (run the teacher's predict step first)")
    try:
        with safetensors.safe_open(os.fspath(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            if TENSOR_KEY not in handle.keys():  # noqa: SIM118 (safe_open has no __contains__)
                raise BamError(f"teacher outputs {path} has no {TENSOR_KEY!r} tensor")
            array = handle.get_tensor(TENSOR_KEY)
    except safetensors.SafetensorError as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = f"teacher outputs {path} is not a readable safetensors file"
        raise BamError(f"{where} ({detail}; {_DAMAGED})") from err
    except OSError as err:
        raise BamError(f"teacher outputs {path} cannot be read ({err.strerror or err})") from err
    if metadata.get("format") != "bam-teacher-outputs":
        raise BamError(f"teacher outputs {path} is a safetensors file but not bam teacher outputs")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise BamError(
            f"teacher outputs {path} has format_version {metadata.get('format_version')!r}, "
            f"this bam reads {FORMAT_VERSION!r} (re-run the teacher's predict step)"
        )
    if metadata.get("metadata_sha256") != metadata_checksum(metadata):
        raise BamError(f"teacher outputs {path} fail their metadata_sha256 checksum ({_DAMAGED})")
    if _outputs_sha256(array) != metadata.get("outputs_sha256"):
        raise BamError(f"teacher outputs {path} fail their outputs_sha256 checksum ({_DAMAGED})")
    return metadata, array


def read_teacher_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The provenance recorded with a teacher-outputs file (checks only that it is one)."""
    return _read(path)[0]


def load_teacher_outputs(
    path: str | os.PathLike,
    *,
    task: str,
    split: str,
    examples_fingerprint: str,
    rows: int,
    teacher_hash: str | None = None,
) -> np.ndarray:
    """The stored float32 outputs, after checking they were made for exactly this data and teacher."""
    meta, array = _read(path)
    where = f"teacher outputs {path}"

    def expect(field: str, wanted: str, what: str) -> None:
        if meta.get(field) != wanted:
            raise BamError(f"{where} were made for {what} {meta.get(field)!r}, not {wanted!r}")

    expect("task", task, "task")
    expect("split", split, "split")
    if meta.get("rows") != str(rows) or array.shape[0] != rows:
        raise BamError(
            f"{where} have {array.shape[0]} rows (metadata rows={meta.get('rows')}), expected {rows}"
        )
    if meta.get("examples_fingerprint") != examples_fingerprint:
        raise BamError(
            f"{where} were made from other data or another row order "
            f"(examples_fingerprint {str(meta.get('examples_fingerprint'))[:12]}…, "
            f"expected {examples_fingerprint[:12]}…)"
        )
    if teacher_hash is not None:
        expect("teacher_hash", teacher_hash, "teacher")
    kind = meta.get("kind")
    if kind not in _NDIM or array.ndim != _NDIM[kind] or array.dtype != np.float32:
        raise BamError(
            f"{where} hold a {array.dtype} array of shape {array.shape}, which does not fit kind {kind!r}"
        )
    if not np.isfinite(array).all():
        raise BamError(f"{where} contain NaN or infinite values")
    return array


def load_outputs_for(
    path: str | os.PathLike, examples: Examples, teacher_hash: str | None = None
) -> np.ndarray:
    """Teacher outputs checked against the very rows (task, split, order, count) they must cover."""
    return load_teacher_outputs(
        path,
        task=examples.task,
        split=examples.split,
        examples_fingerprint=examples.fingerprint(),
        rows=len(examples),
        teacher_hash=teacher_hash,
    )


def average_teachers(outputs: list[np.ndarray], kind: str) -> np.ndarray:
    """Ensemble several teachers' outputs for the same rows.

    Classification: the mean in probability space, returned as log-probabilities so that
    ``softmax(result) == mean(softmax(o) for o in outputs)``. Regression: the mean score.
    ``kind`` is "logits"/"classification" or "score"/"regression".
    """
    kind = _kind(kind)
    if not outputs:
        raise BamError("cannot average an empty list of teacher outputs")
    shapes = {np.shape(o) for o in outputs}
    if len(shapes) != 1:
        raise BamError(f"teacher outputs to average have different shapes: {sorted(shapes)}")
    stacked = np.stack([np.asarray(o, dtype=np.float64) for o in outputs])
    if stacked.ndim - 1 != _NDIM[kind]:
        raise BamError(f"teacher outputs of shape {stacked.shape[1:]} do not fit kind {kind!r}")
    if kind == "score":
        return stacked.mean(axis=0).astype(np.float32)
    log_probs = stacked - logsumexp(stacked, axis=-1, keepdims=True)
    return (logsumexp(log_probs, axis=0) - np.log(len(outputs))).astype(np.float32)
