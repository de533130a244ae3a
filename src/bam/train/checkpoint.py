"""What a training output folder holds, and whose run it is: checkpoint, finished summary, key.

A checkpoint (safetensors + JSON: weights, optimizer moments, RNG, progress) is one folder written
atomically, so a ``kill -9`` leaves either the previous checkpoint or the new one, never a
mixture. The learning-rate schedule is not stored: it is a function of the step, and is replayed
on resume. The batch order needs no state either: an epoch's plan is a pure function of (seed,
epoch). What remains random is dropout, so the torch generators are stored and restored.

A run is identified by :func:`run_key`, a fingerprint of everything its results depend on; a
checkpoint or a finished run is reused only under the same key, and a folder holding another
run is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from bam.config.train import TrainConfig, config_to_dict
from bam.data.examples import Examples
from bam.data.load import load_examples
from bam.data.prepare import training_rows
from bam.distill.store import read_teacher_metadata
from bam.errors import BamError
from bam.fileio import atomic_dir, atomic_write_json, fingerprint, recover_dir, sha256_file
from bam.model import MODEL_DIR, MODEL_FILE, resolve_encoder_path
from bam.tasks import get_task
from bam.train.averaging import average_tensors, load_average

log = logging.getLogger("bam")

CHECKPOINT_DIR = "checkpoint"
DONE_FILE = "train_done.json"
CONFIG_FILE = "train_config.json"
STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
FORMAT = "bam-checkpoint/1"


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
    return tensors, {"groups": groups, "scalars": scalars}


def _optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["groups"]})


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    average: AveragedModel | None = None,
) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_tensors, optimizer_meta = _optimizer_to_flat(optimizer)
    tensors.update(optimizer_tensors)
    tensors.update(average_tensors(average))
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():  # this process's GPU: dropout there draws from its own generator
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE))
        atomic_write_json(
            tmp / STATE_FILE, {"format": FORMAT, "progress": progress, "optimizer": optimizer_meta}
        )


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    run_key: str,
    average: AveragedModel | None = None,
) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model``, ``optimizer``, the weight average and the RNG; None
    when there is none.

    A checkpoint of another run (``run_key`` differs) is refused before anything is loaded; a
    damaged one is reported, never half-trusted.
    """
    if not folder.exists():
        return None
    try:
        meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{STATE_FILE} is not a {FORMAT} state")
        progress = meta["progress"]
        if progress.get("run_key") != run_key:
            raise BamError(
                f"{folder}: checkpoint of another configuration, data or model; "
                "use another --output, or --overwrite to start over"
            )
        tensors = load_file(str(folder / TENSORS_FILE))
        weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        model.load_state_dict(weights)
        _optimizer_from_flat(optimizer, tensors, meta["optimizer"])
        load_average(average, tensors)
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except BamError:
        raise
    except Exception as err:  # a damaged checkpoint is reported, never half-loaded
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise BamError(
            f"{folder}: damaged checkpoint ({detail}); delete the folder, or --overwrite, to start over"
        ) from None
    return progress


def tidy_output_dir(output_dir: Path) -> None:
    """Before a (resumed) run: undo what a kill in the middle of a write left in ``output_dir``.

    A model or checkpoint folder caught between atomic_dir's two renames is put back, and
    unfinished temporary files and folders (``.<name>.*.tmp``) are removed. Call it from one
    process only, before anything is written.
    """
    recover_dir(output_dir / MODEL_DIR)
    recover_dir(output_dir / CHECKPOINT_DIR)
    for leftover in [*output_dir.glob(".*.tmp"), output_dir / f".{CHECKPOINT_DIR}.done"]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.exists():
            leftover.unlink()


def remove_checkpoint(folder: Path) -> None:
    """Delete a finished run's checkpoint: renamed away first, so it never lies there half-deleted."""
    gone = folder.with_name(f".{folder.name}.done")
    shutil.rmtree(gone, ignore_errors=True)
    if folder.exists():
        os.replace(folder, gone)
        shutil.rmtree(gone, ignore_errors=True)


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


def _teacher_identity(path: str) -> dict[str, str] | None:
    """What a teacher-outputs file holds (its checksum and provenance), not where it lies.

    None for a file that cannot be read: the error, naming the file, comes when it is loaded.
    """
    try:
        meta = read_teacher_metadata(path)
    except BamError:
        return None
    return {k: meta.get(k, "") for k in ("outputs_sha256", "teacher_hash", "examples_fingerprint", "kind")}


def run_key(config: TrainConfig, train_examples: list[Examples] | None = None) -> str:
    """Fingerprint of everything a run's results depend on: its settings, its training and dev
    rows, the encoder's files and the teacher outputs it reads (by content, not by path, so a run
    folder that holds them can move). A checkpoint, a finished run or a ``bam run`` stage is
    reused only under the same key."""
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
    return fingerprint(
        {
            "config": {**config_to_dict(config), "teacher_outputs": teachers},
            "train": [examples.fingerprint() for examples in train_examples],
            "dev": dev,
            "model": model_digest(config.model),
        }
    )


def check_output_dir(output_dir: Path, config: TrainConfig, key: str) -> None:
    """Refuse a folder holding another run: its settings differ, or it finished on other data.

    Teacher outputs are compared by content (in ``key``), not by path: a run folder may move.
    """
    stored = _read_json(output_dir / CONFIG_FILE)
    wanted = json.loads(json.dumps(config_to_dict(config)))  # as it reads back from the file
    if stored is not None:
        stored.pop("teacher_outputs", None)
        wanted.pop("teacher_outputs")
    if stored is not None and stored != wanted:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise BamError(
            f"{output_dir}: holds a run with other settings ({', '.join(changed[:3])}); "
            "use another --output, or --overwrite to replace it"
        )
    done = read_done(output_dir)
    if done is not None and done.get("run_key") != key:
        raise BamError(
            f"{output_dir}: holds a finished run on other data, model or teacher outputs; "
            "use another --output, or --overwrite to replace it"
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object bam wrote, or None when missing or damaged (then it is rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("%s: unreadable (%s); ignoring it", path, type(err).__name__)
        return None
    return data if isinstance(data, dict) else None


def checkpoint_progress(output_dir: Path) -> dict[str, Any] | None:
    """How far an unfinished run got at its last checkpoint (``step``, ``total_steps``, ``elapsed``
    seconds), read without loading any tensor: for progress lines from another process."""
    state = _read_json(Path(output_dir) / CHECKPOINT_DIR / STATE_FILE)
    progress = state.get("progress") if state else None
    return progress if isinstance(progress, dict) and "step" in progress else None


def read_done(output_dir: Path) -> dict[str, Any] | None:
    """The summary a finished run wrote, or None (not finished, or the file is damaged)."""
    done = _read_json(Path(output_dir) / DONE_FILE)
    required = ("run_key", "dev", "history", "model_sha256")
    return done if done is not None and all(k in done for k in required) else None


def finished_run(output_dir: Path, key: str | None = None) -> dict[str, Any] | None:
    """The finished run's summary if its model is intact (and its key is ``key``); else None."""
    output_dir = Path(output_dir)
    done = read_done(output_dir)
    if done is None or (key is not None and done["run_key"] != key):
        return None
    model_file = output_dir / MODEL_DIR / MODEL_FILE
    if not model_file.is_file() or sha256_file(model_file) != done["model_sha256"]:
        log.warning("%s: the finished run's model is missing or damaged; training again", output_dir)
        return None
    return done
