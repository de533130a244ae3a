"""What a training output folder holds, and whose run it is: checkpoint, finished summary, key.

A checkpoint (safetensors + JSON: weights, optimizer moments, RNG, progress) is one folder written
atomically, so a ``kill -9`` leaves either the previous checkpoint or the new one, never a
mixture. The learning-rate schedule is not stored: it is a function of the step, and is replayed
on resume. The batch order needs no state either: an epoch's plan is a pure function of (seed,
epoch), and of the task shares recorded in the progress under ``sampling: adaptive``
(:mod:`bam.train.sampling`). What remains random is dropout, so the torch generators are stored
and restored.

A run is identified by :func:`run_key`, a fingerprint of everything its results depend on; a
checkpoint or a finished run is reused only under the same key, and a folder holding another
run is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from bam.config.train import TrainConfig, build_dataclass
from bam.errors import BamError
from bam.fileio import (
    LOCK_FILE,
    atomic_dir,
    atomic_write_json,
    exclusive_folder,
    fingerprint,
    recover_dir,
    remove_stale_temporaries,
    sha256_file,
)
from bam.model import MODEL_DIR, MODEL_FILE
from bam.train.averaging import average_tensors, load_average
from bam.train.keys import keyed_settings, run_keys

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
        state = {
            "format": FORMAT,
            "progress": progress,
            "optimizer": optimizer_meta,
            "tensors_sha256": sha256_file(tmp / TENSORS_FILE),
        }
        state = json.loads(json.dumps(state))  # the checksum covers the state as it reads back
        atomic_write_json(tmp / STATE_FILE, {**state, "state_sha256": fingerprint(state, 64)})


def _verified_state(folder: Path) -> dict[str, Any]:
    """``state.json``, after checking it and the tensors file against the checksums written with
    them: a truncated or flipped byte in either is a ``ValueError`` saying which file failed."""
    meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{STATE_FILE} is not a {FORMAT} state")
    if "state_sha256" not in meta and "tensors_sha256" not in meta:  # an older bam's checkpoint
        log.warning("%s: a checkpoint without checksums (an older bam's); loading it unverified", folder)
        return meta
    recorded = meta.pop("state_sha256", None)
    if recorded != fingerprint(meta, 64):
        raise ValueError(f"{STATE_FILE} fails its sha256 checksum: corrupted")
    if sha256_file(folder / TENSORS_FILE) != meta.get("tensors_sha256"):
        raise ValueError(f"{TENSORS_FILE} fails its sha256 checksum: truncated or corrupted")
    return meta


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    keys: list[str],
    average: AveragedModel | None = None,
) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model``, ``optimizer``, the weight average and the RNG; None
    when there is none.

    A checkpoint of another run (its key is none of ``keys``) is refused before anything is loaded; a
    damaged one is reported, never half-trusted.
    """
    if not folder.exists():
        return None
    try:
        meta = _verified_state(folder)
        progress = meta["progress"]
        if progress.get("run_key") not in keys:
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
            f"{folder}: damaged checkpoint ({detail}); delete {folder} to train this stage again "
            "from its start (or --overwrite)"
        ) from None
    return progress


def tidy_output_dir(output_dir: Path) -> None:
    """Before a (resumed) run: undo what a kill in the middle of a write left in ``output_dir``.

    A model or checkpoint folder caught between atomic_dir's two renames is put back, and
    unfinished temporary files and folders (``.<name>.<pid>.*.tmp`` of dead writers) are removed.
    Call it under the folder's lock (:func:`bam.fileio.exclusive_folder`), before anything is written.
    """
    recover_dir(output_dir / MODEL_DIR)
    recover_dir(output_dir / CHECKPOINT_DIR)
    remove_stale_temporaries(output_dir)
    shutil.rmtree(output_dir / f".{CHECKPOINT_DIR}.done", ignore_errors=True)


def tidy_finished_dir(output_dir: Path, keep_checkpoint: bool = False) -> None:
    """Make a finished stage hold only what it promises: model, record, settings, teacher outputs.

    The loop's last step, under the folder's lock, once ``train_done.json`` is written: the
    checkpoint goes (unless ``keep_checkpoint``), and so do temporary files a crash left. The lock
    file itself goes when the lock is released. :func:`finished_run` calls it too, for a stage
    whose process was killed between its record and this.
    """
    tidy_output_dir(output_dir)
    if not keep_checkpoint:
        remove_checkpoint(output_dir / CHECKPOINT_DIR)


def remove_checkpoint(folder: Path) -> None:
    """Delete a finished run's checkpoint: renamed away first, so it never lies there half-deleted."""
    gone = folder.with_name(f".{folder.name}.done")
    shutil.rmtree(gone, ignore_errors=True)
    if folder.exists():
        os.replace(folder, gone)
        shutil.rmtree(gone, ignore_errors=True)


def stage_folder(stages: Path, name: str, config: TrainConfig) -> Path:
    """``stages/<name>-<key>``: under the first of the stage's :func:`run_keys` whose folder
    exists (a stage trained before the key changed), else under today's key. A stage trained in
    fp32 (every stage before precision was a setting) is never silently retrained in the bf16
    that ``auto`` now picks beside it: that is refused, saying how to reuse it."""
    folders = [stages / f"{name}-{key}" for key in run_keys(config)]
    found = next((folder for folder in folders if folder.is_dir()), None)
    if found is not None:
        return found
    chosen = keyed_settings(config).get("precision")
    if config.precision == "auto" and chosen:  # auto picked bf16/fp16: is this stage there in fp32?
        fp32 = dataclasses.replace(config, precision="fp32")
        old = [stages / f"{name}-{key}" for key in run_keys(fp32)]
        trained = next((f for f in old if (f / DONE_FILE).is_file() or (f / CHECKPOINT_DIR).is_dir()), None)
        if trained is not None:
            raise BamError(
                f"{trained}: trained in fp32, and precision: auto now picks {chosen} on this machine; "
                "add train.precision=fp32 to reuse this run's stages, or give a new --output"
            )
    return folders[0]


def check_output_dir(output_dir: Path, config: TrainConfig, keys: list[str]) -> None:
    """Refuse a folder holding another run: its weight-determining settings differ, or it
    finished on other data. Teacher outputs are compared by content (in ``keys``), not by path:
    a run folder may move."""
    stored = _read_json(output_dir / CONFIG_FILE)
    if stored is not None:
        try:
            stored = keyed_settings(build_dataclass(TrainConfig, stored, str(output_dir / CONFIG_FILE)))
        except BamError:
            stored = {"unreadable": True}
        wanted = keyed_settings(config)
        stored.pop("teacher_outputs", None)
        wanted.pop("teacher_outputs")
        if stored != wanted:
            changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise BamError(
                f"{output_dir}: holds a run with other settings ({', '.join(changed[:3])}); "
                "use another --output, or --overwrite to replace it"
            )
    done = read_done(output_dir)
    if done is not None and done.get("run_key") not in keys:
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


def finished_run(output_dir: Path, keys: list[str] | None = None, tidy: bool = True) -> dict[str, Any] | None:
    """The finished run's summary if its model is intact (and its key is one of ``keys``); else None.
    With ``tidy``, what a crash left in a finished stage is cleared (a dry run only looks)."""
    output_dir = Path(output_dir)
    done = read_done(output_dir)
    if done is None or (keys is not None and done["run_key"] not in keys):
        return None
    model_file = output_dir / MODEL_DIR / MODEL_FILE
    if not model_file.is_file() or sha256_file(model_file) != done["model_sha256"]:
        log.warning("%s: the finished run's model is missing or damaged; training again", output_dir)
        return None
    if tidy and _leftovers(output_dir):
        _tidy_unless_busy(output_dir)
    return done


def _leftovers(output_dir: Path) -> bool:
    """Whether a finished stage holds more than it promises (what a kill during its last step left)."""
    names = (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.done", LOCK_FILE)
    return any((output_dir / name).exists() for name in names) or any(output_dir.glob(".*.tmp"))


def _tidy_unless_busy(output_dir: Path) -> None:
    """:func:`tidy_finished_dir` under the folder's lock, if no live process holds it (one that
    does is finishing the stage, and tidies it itself)."""
    keep = bool((_read_json(output_dir / CONFIG_FILE) or {}).get("keep_checkpoint", False))
    try:
        with exclusive_folder(output_dir, wait=0):
            tidy_finished_dir(output_dir, keep_checkpoint=keep)
    except BamError as err:  # busy, or a read-only copy of a run: it stays as it is
        log.debug("%s: not tidied (%s)", output_dir, err)
