"""Teacher outputs on a student's training rows: one teacher's, or cross-fitted from fold teachers.

A teacher labelling the rows it was trained on is over-confident on them. Cross-fitting splits
the rows into k fixed folds (:func:`bam.data.prepare.training_folds`) and trains k extra teachers,
teacher i without fold i; the student reads, for a row of fold i, what teacher i says about it.
Each fold teacher is run on its own held-out rows only (one teacher pass over the rows in all,
not k), and the parts are assembled into one file that the student reads like any other.
Every file is cached next to the teacher that made it, keyed by the rows it covers, and checked
against those rows and the teachers' model files before it is reused.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bam.config.train import TrainConfig
from bam.data.examples import Examples
from bam.data.features import load_or_tokenize
from bam.data.prepare import training_folds, training_rows
from bam.distill.store import OUTPUT_KIND, load_outputs_for, read_teacher_metadata, save_teacher_outputs
from bam.errors import BamError
from bam.fileio import fingerprint, sha256_file
from bam.inference.forward import predict_outputs
from bam.model import MODEL_DIR, MODEL_FILE, load_bam_model, pad_id
from bam.precision import model_precision
from bam.tasks import get_task
from bam.tasks.spec import TaskSpec

log = logging.getLogger("bam")
# Rows per teacher-inference batch: measured fastest on CPU (bench/teacher_pass.py): larger
# batches spill the activations out of cache.
TEACHER_BATCH = 32


class NotRecorded(BamError):
    """Teacher outputs looked up without recording them (``bam run --dry-run``) are not there yet."""


def _model_hash(teacher_dir: Path, record: bool) -> str:
    """The teacher's model file checksum; an untrained teacher is :class:`NotRecorded` when only looking."""
    model_file = teacher_dir / MODEL_DIR / MODEL_FILE
    if not record and not model_file.is_file():
        raise NotRecorded(f"{teacher_dir}: not trained yet")
    return sha256_file(model_file)


def _cached(
    path: Path,
    task: TaskSpec,
    examples: Examples,
    teacher_hash: str,
    compute: Callable[[], tuple[np.ndarray, dict[str, Any]]] | None,
) -> Path:
    """``path`` if it holds outputs of this teacher on exactly these rows; else ``compute()`` the
    outputs (and their tokenizer, max_length and kind) and write them there. With no ``compute``
    (only looking), outputs that are not there are :class:`NotRecorded`."""
    try:
        load_outputs_for(path, examples, teacher_hash)
        return path
    except BamError:
        if compute is None:
            raise NotRecorded(f"{path}: not recorded yet") from None
        # missing, stale or damaged: compute again
    outputs, provenance = compute()
    save_teacher_outputs(
        path,
        outputs,
        task=task.name,
        split="train",
        examples_fingerprint=examples.fingerprint(),
        teacher_hash=teacher_hash,
        **provenance,
    )
    return path


def record_outputs(teacher_dir: Path, task: TaskSpec, examples: Examples, record: bool = True) -> Path:
    """The teacher's outputs on ``examples`` of ``task``, cached next to the teacher (keyed by the
    rows); with ``record`` false, only the file already there (else :class:`NotRecorded`)."""
    model_dir = teacher_dir / MODEL_DIR

    def predict() -> tuple[np.ndarray, dict[str, Any]]:
        model, tokenizer, meta = load_bam_model(model_dir)
        device = next(model.parameters()).device
        precision = model_precision(meta, device)
        log.info(
            "%s: recording outputs on %d %s rows (%s, %s)",
            teacher_dir.name,
            len(examples),
            task.name,
            device,
            precision.name,
        )
        max_length = meta["train_config"]["max_length"]
        features = load_or_tokenize(examples, tokenizer, max_length)
        outputs = predict_outputs(  # stored as fp32, whatever precision computed them
            model, features, task.head_name, pad_id(tokenizer), TEACHER_BATCH, precision=precision
        )
        return outputs, {
            "tokenizer": tokenizer.name_or_path,
            "max_length": max_length,
            "kind": OUTPUT_KIND[task.kind],
        }

    path = teacher_dir / f"outputs-{fingerprint(examples.fingerprint())}.safetensors"
    return _cached(path, task, examples, _model_hash(teacher_dir, record), predict if record else None)


def record_teacher_outputs(
    teacher_dir: Path, student: TrainConfig, task_name: str, record: bool = True
) -> Path:
    """The teacher's outputs on the student's training rows of ``task_name``."""
    task = get_task(task_name)
    return record_outputs(teacher_dir, task, training_rows(task, student), record)


def combined_hash(hashes: list[str]) -> str:
    """One teacher hash for outputs assembled from several teachers (in fold order)."""
    return hashlib.sha256("\n".join(hashes).encode("ascii")).hexdigest()


def cross_fitted_outputs(
    fold_dirs: list[Path], student: TrainConfig, task_name: str, record: bool = True
) -> Path:
    """Out-of-fold outputs on the student's rows: row r from fold teacher ``fold(r)``, which never
    saw it. ``fold_dirs[i]`` is the trained teacher that left fold i of ``len(fold_dirs)`` out;
    the file is cached next to ``fold_dirs[0]``."""
    task = get_task(task_name)
    examples = training_rows(task, student)
    folds = training_folds(task, student, len(fold_dirs))
    hashes = [_model_hash(folder, record) for folder in fold_dirs]

    def assemble() -> tuple[np.ndarray, dict[str, Any]]:
        parts = []
        for fold, folder in enumerate(fold_dirs):
            rows = np.flatnonzero(folds == fold)
            if len(rows) == 0:  # fewer rows than folds
                continue
            held_out = examples.subset(rows)
            part = record_outputs(folder, task, held_out)
            parts.append((rows, part, load_outputs_for(part, held_out, hashes[fold])))
        first = read_teacher_metadata(parts[0][1])
        outputs = np.empty((len(examples), *parts[0][2].shape[1:]), dtype=np.float32)
        for rows, _, values in parts:
            outputs[rows] = values
        return outputs, {
            "tokenizer": first["tokenizer"],
            "max_length": int(first["max_length"]),
            "kind": first["kind"],
        }

    path = fold_dirs[0] / f"cross-fit-{fingerprint(examples.fingerprint())}.safetensors"
    return _cached(path, task, examples, combined_hash(hashes), assemble if record else None)
