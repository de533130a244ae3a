"""What several test folders build on: the tiny random encoder, a saved tiny model, fixture paths."""

from __future__ import annotations

from pathlib import Path

import torch

from bam.model import build_model, save_bam_model
from bam.tasks import get_task

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
GLUE = TESTS.parent / "src" / "bam" / "resources" / "glue"  # the vendored copy
SRC = TESTS.parent / "src" / "bam"

TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2}

PAIRS = [
    ("A man is sleeping on a couch.", "A person rests."),
    ("The cat sat.", "Nobody has ever seen a cat sit on anything, least of all on a mat in a kitchen."),
    ("Short.", "Also short."),
]


def save_tiny_model(folder: Path, tasks: list[str], seed: int = 0, pooling: str = "cls") -> Path:
    """A tiny random BERT with one head per task, saved as a bam model folder."""
    torch.manual_seed(seed)
    model, tokenizer = build_model(
        "minilm-l6", [get_task(t) for t in tasks], random_init=True, overrides=dict(TINY), pooling=pooling
    )
    return save_bam_model(model, tokenizer, folder)


def smoke_run_with_multi(out: Path, name: str, settings: str) -> dict:
    """``bam run --preset smoke`` (one epoch, one thread) with Multi and one method ``name`` that
    learns from it: Single and BAM dropped. Returns the run's results.json."""
    import json

    from bam.cli.app import main

    methods = ["methods.single=null", "methods.bam=null", f"methods.{name}={settings}"]
    argv = ["run", "--preset", "smoke", "--output", str(out), "--quiet", "train.num_threads=1", *methods]
    assert main([*argv, "train.epochs=1"]) == 0
    return json.loads((out / "results.json").read_text())
