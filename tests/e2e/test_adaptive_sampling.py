"""``sampling: adaptive`` in a tiny run: when the shares change, what the record keeps, what stays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bam.cli import main
from bam.config.train import TrainConfig, build_dataclass
from bam.data.prepare import training_examples
from bam.distill.store import save_teacher_outputs
from bam.tasks import get_task
from bam.train.loop import StepInfo, train

# Two tasks of 32 rows, batch 8: 8 steps an epoch; the lag measured on 12 of each task's rows.
TWO_TASKS = {
    "tasks": ["rte", "stsb"],
    "train_cap": {"rte": 32, "stsb": 32},
    "epochs": 2.0,
    "sampling_slice": 12,
}


def _run(tmp_path: Path, values: dict, name: str, **extra) -> tuple[dict, list[StepInfo]]:
    steps: list[StepInfo] = []
    config = build_dataclass(TrainConfig, {**values, **TWO_TASKS, **extra}, "test")
    train(config, tmp_path / name, quiet=True, on_step=steps.append)
    return json.loads((tmp_path / name / "train_done.json").read_text()), steps


@pytest.mark.parametrize(("every", "update_steps"), [(0, [0, 8]), (3, [0, 3, 6, 9, 12, 15])])
def test_the_shares_change_at_the_documented_steps_and_are_recorded(
    tmp_path: Path, tiny_train_values: dict, every: int, update_steps: list[int]
) -> None:
    done, _ = _run(tmp_path, tiny_train_values, "run", sampling="adaptive", sampling_update_every=every)
    updates = done["shares_over_training"]
    assert [u["step"] for u in updates] == update_steps  # 0: each epoch's start, after the first
    assert updates[0]["shares"] == done["shares"] and set(updates[0]["lags"].values()) == {None}
    for update in updates[1:]:
        assert all(lag is not None and lag >= 0 for lag in update["lags"].values())
        assert sum(update["shares"].values()) == pytest.approx(1.0)
        assert all(0.5 <= f <= 2.0 for f in update["factors"].values())
    assert any(u["shares"] != done["shares"] for u in updates[1:])  # the lags moved them


def test_static_sampling_records_and_trains_as_before(tmp_path: Path, tiny_train_values: dict) -> None:
    """``static`` is the default: no record of updates, and the same batches and weights."""
    default, default_steps = _run(tmp_path, tiny_train_values, "default")
    static, static_steps = _run(tmp_path, tiny_train_values, "static", sampling="static")
    assert "shares_over_training" not in default
    assert default["run_key"] == static["run_key"] and default["model_sha256"] == static["model_sha256"]
    assert [s.tokens for s in default_steps] == [s.tokens for s in static_steps]
    adaptive, adaptive_steps = _run(tmp_path, tiny_train_values, "adaptive", sampling="adaptive",
                                    sampling_update_every=3)  # fmt: skip
    assert adaptive["run_key"] != default["run_key"]
    # The static shares' batches until the first update, at step 3; other batches from there on.
    assert [s.tokens for s in adaptive_steps[:3]] == [s.tokens for s in default_steps[:3]]
    assert [s.per_task for s in adaptive_steps[3:]] != [s.per_task for s in default_steps[3:]]


def _teacher_file(tmp_path: Path, name: str) -> str:
    """Random teacher outputs for a task's 32 capped training rows."""
    task = get_task(name)
    examples = training_examples(task, None, 32)
    outputs = np.random.default_rng(0).normal(size=(len(examples), task.num_outputs)).astype(np.float32)
    path = tmp_path / f"{name}.safetensors"
    save_teacher_outputs(
        path, outputs[:, 0] if task.kind == "regression" else outputs, task=name, split="train",
        examples_fingerprint=examples.fingerprint(), teacher_hash="t", tokenizer="tok", max_length=64,
        kind=task.kind,
    )  # fmt: skip
    return str(path)


def test_a_distilling_student_is_measured_too(tmp_path: Path, tiny_train_values: dict) -> None:
    """Against its teachers' outputs (random here) rather than gold: the same updates."""
    teachers = {name: [_teacher_file(tmp_path, name)] for name in ("rte", "stsb")}
    settings = {"sampling": "adaptive", "sampling_update_every": 4}
    gold, _ = _run(tmp_path, tiny_train_values, "gold", **settings)
    distilled, _ = _run(tmp_path, tiny_train_values, "linear", lambda_schedule="linear",
                        teacher_outputs=teachers, **settings)  # fmt: skip
    for done in (gold, distilled):
        assert [u["step"] for u in done["shares_over_training"]] == [0, 4, 8, 12]
        assert all(lag is not None for u in done["shares_over_training"][1:] for lag in u["lags"].values())


def test_the_annealed_lag_follows_the_target_the_student_trains_toward(
    tmp_path: Path, tiny_train_values: dict
) -> None:
    """``sampling_lag_target: annealed`` measures against λ·gold + (1−λ)·teacher: other lags than
    the teacher alone once λ > 0 (every update here), the same run key as before when left at
    ``teacher`` (the trained bam_adaptive stages keep their folders)."""
    teachers = {name: [_teacher_file(tmp_path, name)] for name in ("rte", "stsb")}
    settings = {"sampling": "adaptive", "sampling_update_every": 4, "lambda_schedule": "linear",
                "teacher_outputs": teachers}  # fmt: skip
    teacher, _ = _run(tmp_path, tiny_train_values, "teacher", **settings)
    named, _ = _run(tmp_path, tiny_train_values, "named", sampling_lag_target="teacher", **settings)
    annealed, _ = _run(tmp_path, tiny_train_values, "annealed", sampling_lag_target="annealed", **settings)
    assert named["run_key"] == teacher["run_key"] != annealed["run_key"]
    assert named["shares_over_training"] == teacher["shares_over_training"]
    first = [u["lags"] for u in teacher["shares_over_training"][1:2]]
    assert first != [u["lags"] for u in annealed["shares_over_training"][1:2]]  # same weights at step 4


def test_the_plan_says_when_an_adaptive_student_moves_its_shares(capsys: pytest.CaptureFixture[str]) -> None:
    method = "methods.bam_adaptive={lambda_schedule: linear, sampling: adaptive, sampling_update_every: 500}"
    assert main(["run", "--preset", "glue5-cpu", "--dry-run", "--no-calibrate", "seeds=[1]", method]) == 0
    plan = capsys.readouterr().out
    line = "  bam_adaptive: these shares first, then each task's × g(its lag behind its target, over the"
    assert line + " mean lag), re-measured every 500 steps" in plan
    assert "  bam: these shares" not in plan
    annealed = method.replace("500}", "500, sampling_lag_target: annealed, sampling_lag_scale: median}")
    assert main(["run", "--preset", "glue5-cpu", "--dry-run", "--no-calibrate", "seeds=[1]", annealed]) == 0
    assert "× g(its lag behind λ·gold + (1−λ)·teacher, over the median lag)" in capsys.readouterr().out
