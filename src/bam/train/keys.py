"""A stage's key: a fingerprint of what decides its trained weights, and where its folder is.

The key covers the weight-determining settings (:func:`keyed_settings`), the training and dev
rows, the encoder's files, the teacher outputs a student reads and the model it starts from
(``init_model``), by content. A checkpoint, a finished run or a ``bam run`` stage is reused only
under its key; keys of earlier versions of bam are still recognised (:func:`run_keys`).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Any

from bam.config.train import TrainConfig, config_to_dict
from bam.data.examples import Examples
from bam.data.load import load_examples
from bam.data.prepare import training_rows
from bam.distill.store import read_teacher_metadata
from bam.errors import BamError
from bam.fileio import fingerprint, sha256_file
from bam.model import MODEL_FILE, default_device, resolve_encoder_path, resolve_model_dir
from bam.precision import resolve_precision
from bam.tasks import get_task


@lru_cache(maxsize=8)
def _folder_digest(folder: str, stamps: tuple[tuple[str, int, int], ...]) -> str:
    return fingerprint({name: sha256_file(Path(folder) / name) for name, _, _ in stamps})


def model_digest(name: str) -> str:
    """The encoder's identity: a local folder by the content of its files, a hub id by its name."""
    folder = Path(resolve_encoder_path(name))
    if not folder.is_dir():
        return name
    files = sorted(p for p in folder.iterdir() if p.is_file())
    stamps = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _folder_digest(str(folder.resolve()), stamps)


def start_digest(folder: str) -> str:
    """The weights a run starts from (``init_model``), by content: a retrained source gives a new
    key, and a run folder that holds the source can move."""
    try:
        model_dir = resolve_model_dir(folder)
    except BamError as err:
        raise BamError(f"init_model: {err}") from None
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise BamError(f"init_model: {path} is missing (the model is not trained yet)")
    stat = path.stat()
    return _folder_digest(str(model_dir.resolve()), ((MODEL_FILE, stat.st_size, stat.st_mtime_ns),))


def _teacher_identity(path: str) -> dict[str, str] | None:
    """What a teacher-outputs file holds (its checksum and provenance), not where it lies.

    None for a file that cannot be read: the error, naming the file, comes when it is loaded.
    """
    try:
        meta = read_teacher_metadata(path)
    except BamError:
        return None
    return {k: meta.get(k, "") for k in ("outputs_sha256", "teacher_hash", "examples_fingerprint", "kind")}


def keyed_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings that determine a stage's trained weights, as its key holds them.

    Settings that do not (``NOT_KEYED``: logging, checkpoint frequency, threads, the evaluation
    batch) are held at their defaults, so changing them trains nothing again and stages trained
    before they left the key keep theirs. The precision is the one that runs on this device, not
    the setting (``auto`` is bf16 on one machine and fp32 on another); fp32 is left out, so stages
    trained before precision was a setting (all fp32) keep their keys."""
    values = config_to_dict(config)
    for spec in dataclasses.fields(config):
        if spec.metadata.get("keyed") is False:
            values[spec.name] = getattr(TrainConfig(), spec.name)
    values.pop("precision")
    ran = resolve_precision(config.precision, default_device()).name
    if ran != "fp32":
        values["precision"] = ran
    return values


def _legacy_settings(config: TrainConfig) -> dict[str, Any] | None:
    """The settings as keys held them before ``keyed_settings`` (every setting, no precision):
    fp32 stages only, since every stage trained then was fp32."""
    if resolve_precision(config.precision, default_device()).name != "fp32":
        return None
    values = config_to_dict(config)
    values.pop("precision")
    return values


def run_keys(config: TrainConfig, train_examples: list[Examples] | None = None) -> list[str]:
    """Fingerprints of everything a run's results depend on: its weight-determining settings,
    its training and dev rows, the encoder's files and the teacher outputs it reads (by content,
    not by path, so a run folder that holds them can move). A checkpoint, a finished run or a
    ``bam run`` stage is reused only under one of these keys: the first is today's; a second,
    when there is one, is the key the same stage had before logging, checkpoint frequency,
    threads and the evaluation batch left the key, so a folder trained then is still found."""
    tasks = [get_task(name) for name in config.tasks]
    if train_examples is None:
        train_examples = [training_rows(task, config) for task in tasks]
    dev = [
        load_examples(task, split, config.data_dir).fingerprint()
        for task in tasks
        for split in task.dev_splits
    ]
    teachers = {
        task: [_teacher_identity(path) for path in files] for task, files in config.teacher_outputs.items()
    }
    rest = {
        "train": [examples.fingerprint() for examples in train_examples],
        "dev": dev,
        "model": model_digest(config.model),
    }
    keys = []
    for settings in (keyed_settings(config), _legacy_settings(config)):
        if settings is not None:
            if config.init_model:  # by content, not path
                settings["init_model"] = start_digest(config.init_model)
            key = fingerprint({"config": {**settings, "teacher_outputs": teachers}, **rest})
            keys += [key] if key not in keys else []
    return keys


def run_key(config: TrainConfig, train_examples: list[Examples] | None = None) -> str:
    """Today's key of a run (:func:`run_keys`)."""
    return run_keys(config, train_examples)[0]
