"""A short real fine-tune of the packaged MiniLM-L6: the pre-trained weights must learn fast."""

from __future__ import annotations

import json

import pytest

from bam.cli.app import main

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


def test_minilm_learns_sst2_from_a_few_hundred_rows(tmp_path, capsys) -> None:
    out = tmp_path / "sst2"
    code = main(
        ["train", "--task", "sst2", "--model", "minilm-l6", "--output", str(out), "--quiet",
         "train_cap.sst2=480", "epochs=2", "batch_size=16", "learning_rate=1e-4", "max_length=64",
         "log_with=[]", "checkpoint_every=0"]
    )  # fmt: skip
    assert code == 0
    dev = json.loads((out / "train_done.json").read_text())["dev"]
    # Chance on SST-2 dev is 50.9% (majority class); a random-init encoder stays near it.
    assert dev["scores"]["sst2"] > 70.0

    assert main(["evaluate", "--model", str(out), "--output", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["scores"]["sst2"] == pytest.approx(dev["scores"]["sst2"])
