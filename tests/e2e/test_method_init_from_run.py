"""Fine-tuning after multi-task training: each task's model starts from the multi-task student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bam.model import MODEL_DIR, load_bam_model
from tests.helpers import smoke_run_with_multi

pytestmark = pytest.mark.slow


def test_each_task_s_fine_tuned_model_starts_from_the_multi_task_student(tmp_path: Path) -> None:
    # A learning rate of 1e-12 keeps the weights where they start: the multi-task student's.
    settings = "{per_task: true, init_from: multi, learning_rate: 1.0e-12}"
    results = smoke_run_with_multi(tmp_path / "fine-tuned", "multi_ft", settings)
    stages = results["details"]["stages"]["13"]
    assert set(stages) == {"single", "multi", "multi_ft"} and len(stages["multi_ft"]) == 2
    multi, _, _ = load_bam_model(Path(stages["multi"][0]) / MODEL_DIR, device="cpu")
    source = multi.state_dict()
    for folder, task in zip(map(Path, stages["multi_ft"]), ("rte", "stsb"), strict=True):
        started = json.loads((folder / "train_config.json").read_text())["init_model"]
        assert Path(started) == Path(stages["multi"][0]) / MODEL_DIR
        tuned, _, _ = load_bam_model(folder / MODEL_DIR, device="cpu")
        assert list(tuned.heads) == [task]  # the task's own head, the other dropped
        for key, weights in tuned.state_dict().items():
            assert torch.allclose(weights, source[key], atol=1e-6), key
    assert set(results["methods"]["multi_ft"]) == {"rte", "stsb", "avg"}
