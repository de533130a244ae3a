"""Shared fixtures: a private cache folder per test session, and a tiny random encoder."""

from __future__ import annotations

import os

import pytest

# Before anything imports huggingface_hub (it reads this once): tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.helpers import TINY


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tokenization caches go to a temporary folder, never the user's ~/.cache."""
    os.environ["BAM_CACHE"] = str(tmp_path_factory.mktemp("bam-cache"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tiny_train_values() -> dict:
    """TrainConfig values for a fast run: tiny random encoder, few rows, no logging files."""
    return {
        "model": "minilm-l6",
        "random_init": True,
        "encoder_overrides": dict(TINY),
        "max_length": 64,
        "batch_size": 8,
        "epochs": 1.0,
        "learning_rate": 1e-3,
        "log_with": [],
        "checkpoint_every": 0,
    }
