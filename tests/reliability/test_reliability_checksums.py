"""A truncated or bit-flipped checkpoint or teacher-outputs file is refused, never loaded.

Checksums are written with each file (``state.json`` holds the tensors file's sha256 and its
own; a teacher-outputs file holds ``outputs_sha256`` and ``metadata_sha256``). Every byte of the
small files is flipped in turn, and every length cut off, so "detected" here means 100%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bam.distill.store import load_teacher_outputs, save_teacher_outputs
from bam.errors import BamError
from bam.train.checkpoint import STATE_FILE, TENSORS_FILE, load_checkpoint, save_checkpoint
from tests.helpers import TINY

ROWS = 12
FINGERPRINT = "f" * 64


def _flipped(raw: bytes, index: int) -> bytes:
    """``raw`` with one bit of byte ``index`` flipped (a different bit for each byte position)."""
    data = bytearray(raw)
    data[index] ^= 1 << (index % 8)
    return bytes(data)


def _teacher_file(path: Path) -> bytes:
    outputs = np.random.default_rng(0).normal(size=(ROWS, 3)).astype(np.float32)
    save_teacher_outputs(
        path, outputs, task="rte", split="train", examples_fingerprint=FINGERPRINT,
        teacher_hash="a" * 64, tokenizer="tok", max_length=32, kind="logits",
    )  # fmt: skip
    return path.read_bytes()


def _load_outputs(path: Path) -> np.ndarray:
    return load_teacher_outputs(path, task="rte", split="train", examples_fingerprint=FINGERPRINT, rows=ROWS)


def test_every_flipped_byte_and_every_cut_of_teacher_outputs_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    raw = _teacher_file(good)
    assert _load_outputs(good).shape == (ROWS, 3)
    bad = tmp_path / "outputs.safetensors"
    damaged = [_flipped(raw, i) for i in range(len(raw))] + [raw[:n] for n in range(len(raw))]
    loaded, messages = [], set()
    for data in damaged:
        bad.write_bytes(data)
        try:
            _load_outputs(bad)
            loaded.append(data)
        except BamError as err:
            assert str(bad) in str(err) and "\n" not in str(err)
            messages.add(str(err).split(str(bad))[1])
    assert not loaded, f"{len(loaded)} of {len(damaged)} damaged files were loaded"
    assert any("checksum" in m for m in messages) and any("not a readable" in m for m in messages)


def _tiny_training_state() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 6)).sum().backward()
    optimizer.step()
    return model, optimizer


def _load(folder: Path) -> dict:
    model, optimizer = _tiny_training_state()
    return load_checkpoint(folder, model, optimizer, ["key"])


def test_every_flipped_byte_and_cut_of_a_checkpoint_is_refused_naming_what_to_delete(tmp_path: Path) -> None:
    folder = tmp_path / "stage" / "checkpoint"
    model, optimizer = _tiny_training_state()
    save_checkpoint(folder, model, optimizer, {"step": 3, "run_key": "key", "history": [{"dev": 51.5}]})
    assert _load(folder)["step"] == 3
    for name in (STATE_FILE, TENSORS_FILE):
        path = folder / name
        raw = path.read_bytes()
        damaged = [_flipped(raw, i) for i in range(len(raw))] + [raw[:n] for n in range(0, len(raw), 7)]
        loaded = 0
        for data in damaged:
            path.write_bytes(data)
            try:
                _load(folder)
                loaded += 1
            except BamError as err:
                message = str(err)
                assert message.startswith(f"{folder}: damaged checkpoint") and f"delete {folder}" in message
                assert "\n" not in message
        path.write_bytes(raw)
        assert loaded == 0, f"{name}: {loaded} of {len(damaged)} damaged copies were loaded"
    assert _load(folder)["step"] == 3  # the intact files load again


def test_a_checkpoint_of_an_older_bam_loads_with_a_warning(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "checkpoint"
    model, optimizer = _tiny_training_state()
    save_checkpoint(folder, model, optimizer, {"step": 2, "run_key": "key"})
    state = json.loads((folder / STATE_FILE).read_text())
    for key in ("state_sha256", "tensors_sha256"):
        del state[key]
    (folder / STATE_FILE).write_text(json.dumps(state))
    assert _load(folder)["step"] == 2
    assert "without checksums" in caplog.text


ENCODER = f"{TINY}".replace("'", "")
TRAIN = [
    "random_init=true", f"encoder_overrides={ENCODER}", "max_length=32", "num_threads=1",
    "train_cap={rte: 24}", "batch_size=4", "epochs=2", "checkpoint_every=2", "log_with=[]",
]  # fmt: skip


@pytest.mark.slow
def test_bam_train_refuses_a_damaged_checkpoint_and_resumes_once_it_is_deleted(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BAM_CACHE": str(tmp_path / "cache"),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
    }
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "bam.cli", "train", "--task", "rte", "--output", str(out), "-q", *TRAIN]
    killed = subprocess.run(
        argv, env={**env, "BAM_FAULT_INJECT": "KILL_AFTER:*/checkpoint"}, capture_output=True
    )
    assert killed.returncode < 0 and (out / "checkpoint" / STATE_FILE).is_file()
    tensors = out / "checkpoint" / TENSORS_FILE
    tensors.write_bytes(_flipped(tensors.read_bytes(), tensors.stat().st_size // 2))

    refused = subprocess.run(argv, env=env, capture_output=True, text=True)
    last = refused.stderr.strip().splitlines()[-1]  # a busy machine's warning may come first
    assert refused.returncode == 2 and refused.stderr.count("bam: error:") == 1, refused.stderr
    assert last.startswith(f"bam: error: {out / 'checkpoint'}: damaged checkpoint")
    assert f"delete {out / 'checkpoint'}" in refused.stderr and "Traceback" not in refused.stderr

    subprocess.run(["rm", "-r", str(out / "checkpoint")], check=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "train_done.json").is_file() and not (out / "checkpoint").exists()
