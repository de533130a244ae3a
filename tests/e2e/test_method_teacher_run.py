"""Multi→Multi: a method taught by the multi-task student trains on that student's recorded outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bam.distill.store import read_teacher_metadata
from bam.fileio import sha256_file
from bam.model import MODEL_DIR, MODEL_FILE
from tests.helpers import smoke_run_with_multi

pytestmark = pytest.mark.slow


def test_a_multi_multi_student_reads_the_multi_student_s_outputs(tmp_path: Path) -> None:
    settings = "{lambda_schedule: linear, teacher: multi}"
    results = smoke_run_with_multi(tmp_path / "multi-multi", "multi_multi", settings)
    stages = results["details"]["stages"]["13"]
    assert set(stages) == {"single", "multi", "multi_multi"} and stages["single"] == []  # no teacher read
    multi, taught = Path(stages["multi"][0]), Path(stages["multi_multi"][0])
    read = json.loads((taught / "train_config.json").read_text())["teacher_outputs"]
    assert sorted(read) == ["rte", "stsb"]
    for task, (path,) in read.items():
        assert Path(path).parent == multi  # recorded next to the multi student, one file per task head
        meta = read_teacher_metadata(path)
        assert (meta["task"], meta["teacher_hash"]) == (task, sha256_file(multi / MODEL_DIR / MODEL_FILE))
    assert set(results["methods"]["multi_multi"]) == {"rte", "stsb", "avg"}
    assert sorted(results["details"]["stages_trained"]) == sorted([multi.name, taught.name])
