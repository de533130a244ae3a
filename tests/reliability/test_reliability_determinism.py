"""The same command with the same seed on the same machine gives the same numbers.

Two training runs of a tiny random model (dropout on, two tasks sampled together) must agree to
the bit: weights, dev scores and the training loss; another seed must not, so that the test
would notice if the seed were ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

from bam.config.train import TrainConfig, build_dataclass
from bam.train.loop import train
from tests.helpers import TINY


def _config(seed: int) -> TrainConfig:
    values = {
        "tasks": ["rte", "stsb"], "random_init": True, "encoder_overrides": dict(TINY), "max_length": 32,
        "train_cap": {"rte": 24, "stsb": 24}, "batch_size": 8, "epochs": 2.0, "learning_rate": 1e-3,
        "log_with": [], "checkpoint_every": 0, "num_threads": 1, "seed": seed,
    }  # fmt: skip
    return build_dataclass(TrainConfig, values, "test")


def _outcome(folder: Path) -> tuple[bytes, dict]:
    done = json.loads((folder / "train_done.json").read_text())
    return (folder / "model" / "model.safetensors").read_bytes(), {k: done[k] for k in ("dev", "history")}


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path: Path) -> None:
    first = train(_config(13), tmp_path / "a", quiet=True)
    second = train(_config(13), tmp_path / "b", quiet=True)
    assert first.history == second.history
    assert _outcome(tmp_path / "a") == _outcome(tmp_path / "b")
    other = train(_config(14), tmp_path / "c", quiet=True)
    assert _outcome(tmp_path / "c")[0] != _outcome(tmp_path / "a")[0]
    assert [h["train_loss"] for h in other.history] != [h["train_loss"] for h in first.history]
