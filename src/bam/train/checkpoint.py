"""Resumable training state in safetensors + JSON: weights, optimizer moments, RNG, progress.

A checkpoint is one folder written atomically, so a ``kill -9`` leaves either the previous
checkpoint or the new one, never a mixture. The learning-rate schedule is not stored: it is a
function of the step, and is replayed on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bam.errors import BamError
from bam.fileio import atomic_dir, atomic_write_json

STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"


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
) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_tensors, optimizer_meta = _optimizer_to_flat(optimizer)
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE))
        atomic_write_json(tmp / STATE_FILE, {"progress": progress, "optimizer": optimizer_meta})


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model`` and ``optimizer``; None when there is none."""
    if not (folder / STATE_FILE).is_file():
        return None
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
        tensors = load_file(str(folder / TENSORS_FILE))
    except Exception as err:  # a damaged checkpoint is reported, never half-loaded
        raise BamError(f"{folder}: damaged checkpoint ({type(err).__name__}); delete it to start over") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    _optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta["progress"]
