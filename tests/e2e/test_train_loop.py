"""The training loop's observable contract: logs, λ, teacher-output checks, kept model."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bam.config.train import TrainConfig, build_dataclass
from bam.data.prepare import training_examples
from bam.distill.store import save_teacher_outputs
from bam.errors import BamError
from bam.tasks import get_task
from bam.train.loop import selection_score, train


def _config(values: dict, **extra) -> TrainConfig:
    return build_dataclass(TrainConfig, {**values, **extra}, "test")


def _teacher_file(tmp_path, task_name: str, cap: int, rows_from: str | None = None):
    task = get_task(task_name)
    examples = training_examples(get_task(rows_from or task_name), None, cap)
    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(len(examples), task.num_outputs)).astype(np.float32)
    if task.kind == "regression":
        outputs = outputs[:, 0]
    path = tmp_path / f"{task_name}-teacher.safetensors"
    save_teacher_outputs(
        path, outputs, task=task.name, split="train", examples_fingerprint=examples.fingerprint(),
        teacher_hash="t", tokenizer="tok", max_length=64, kind=task.kind,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("horizon", [1.0, 0.5])
def test_tensorboard_logs_losses_lambda_lr_and_dev(tmp_path, tiny_train_values, horizon: float) -> None:
    teacher = _teacher_file(tmp_path, "rte", 32)
    stsb_teacher = _teacher_file(tmp_path, "stsb", 32)
    config = _config(
        tiny_train_values, tasks=["rte", "stsb"], train_cap={"rte": 32, "stsb": 32}, log_with=["tensorboard"],
        lambda_schedule="linear", teacher_outputs={"rte": [str(teacher)], "stsb": [str(stsb_teacher)]},
        lambda_horizon=horizon,
    )  # fmt: skip
    result = train(config, tmp_path / "run", quiet=True)
    events = EventAccumulator(str(next((tmp_path / "run" / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lambda", "lr", "loss/rte", "loss/stsb", "dev/rte", "dev/stsb", "dev/bam_avg"} <= tags
    lambdas = [e.value for e in events.Scalars("lambda")]
    total = len(lambdas)
    annealed = round(horizon * total)  # linear from 0 to 1 over these steps, then gold labels only
    assert annealed < total or horizon == 1.0
    assert lambdas == pytest.approx([min(step / annealed, 1.0) for step in range(total)])
    assert result.dev["scores"].keys() == {"rte", "stsb"}
    done = json.loads((tmp_path / "run" / "train_done.json").read_text())
    assert done["total_steps"] == total and (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert done["hardware"].startswith("1 × ") and torch.__version__ in done["hardware"]  # provenance


def test_teacher_outputs_for_other_rows_or_task_are_refused(tmp_path, tiny_train_values) -> None:
    wrong_rows = _teacher_file(tmp_path, "rte", 40)  # made for 40 rows, the student has 32
    config = _config(tiny_train_values, tasks=["rte"], train_cap={"rte": 32}, lambda_schedule="linear",
                     teacher_outputs={"rte": [str(wrong_rows)]})  # fmt: skip
    with pytest.raises(BamError, match=r"rte-teacher\.safetensors"):
        train(config, tmp_path / "a", quiet=True)
    other_task = _teacher_file(tmp_path, "mrpc", 32)
    config.teacher_outputs = {"rte": [str(other_task)]}
    with pytest.raises(BamError, match="made for task 'mrpc', not 'rte'"):
        train(config, tmp_path / "b", quiet=True)
    config.teacher_outputs = {}
    with pytest.raises(BamError, match="needs teacher outputs for task rte"):
        train(config, tmp_path / "c", quiet=True)


def test_the_weight_average_is_what_is_evaluated_and_kept(tmp_path, tiny_train_values) -> None:
    base = _config(tiny_train_values, tasks=["rte"], train_cap={"rte": 32}, epochs=2.0, keep_best=False)
    runs = {name: train(replace(base, ema_decay=decay), tmp_path / name, quiet=True)
            for name, decay in (("plain", 0.0), ("last", 1e-12), ("ema", 0.5))}  # fmt: skip
    weights = {name: load_file(str(tmp_path / name / "model" / "model.safetensors")) for name in runs}
    # An average that forgets at once is the last weights: the average is what is scored and saved.
    assert all(torch.equal(weights["plain"][k], v) for k, v in weights["last"].items())
    assert runs["last"].dev == runs["plain"].dev
    moved = [k for k, v in weights["ema"].items() if not torch.equal(weights["plain"][k], v)]
    assert "heads.rte.1.weight" in moved and any(k.startswith("encoder.") for k in moved)


@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_a_run_that_prints_its_progress_trains_as_a_quiet_one(tmp_path, tiny_train_values, capsys, ema_decay):
    """The progress line once reused the weight average's variable name: every run not given
    ``--quiet`` crashed at its first checkpoint after an evaluation (the demo among them)."""
    config = _config(tiny_train_values, tasks=["rte"], train_cap={"rte": 32}, epochs=2.0, ema_decay=ema_decay)
    shown = train(config, tmp_path / "shown", quiet=False)
    assert "step 4/8 dev rte=" in capsys.readouterr().out
    assert shown.dev == train(config, tmp_path / "quiet", quiet=True).dev


def test_the_kept_model_is_chosen_even_when_no_task_counts_towards_the_bam_average() -> None:
    """WNLI alone has no BAM average (null): the first evaluation was kept whatever came after
    (NaN > NaN is never true). The task scores' mean decides instead."""
    first = {"bam_avg": None, "scores": {"wnli": 43.66}}
    later = {"bam_avg": None, "scores": {"wnli": 56.34}}
    assert selection_score(later) > selection_score(first)
    assert selection_score({"bam_avg": 70.0, "scores": {"rte": 60.0, "wnli": 90.0}}) == 70.0


def test_gradient_accumulation_makes_the_same_update_as_the_whole_batch(tmp_path, tiny_train_values) -> None:
    """Two slices of 4 rows with their gradients summed give the step of one batch of 8 (fp32, no
    dropout: masks are drawn per forward pass): the same rows and the same losses, step by step
    (to float rounding, which Adam then amplifies in near-zero gradients: weights are not compared)."""
    base = {**tiny_train_values, "precision": "fp32", "dropout": 0.0, "train_cap": {"rte": 32}}
    whole: list = []
    sliced: list = []
    train(_config(base), tmp_path / "whole", quiet=True, on_step=whole.append)
    train(
        _config(base, gradient_accumulation_steps=2), tmp_path / "sliced", quiet=True, on_step=sliced.append
    )
    assert [info.step for info in whole] == list(range(1, len(whole) + 1)) == [i.step for i in sliced]
    assert whole[-1].total_steps == len(whole)
    assert all(i.rows == 8 and len(i.tokens) == 8 and i.padded_tokens >= sum(i.tokens) for i in whole)
    assert [i.tokens for i in sliced] == [i.tokens for i in whole]  # the same rows
    # The same weights: the same loss, to the rounding of other padded shapes.
    assert sliced[0].loss == pytest.approx(whole[0].loss, rel=1e-4)
    assert [i.loss for i in sliced] == pytest.approx([i.loss for i in whole], rel=1e-3)


def test_an_evaluator_replaces_the_dev_evaluation(tmp_path, tiny_train_values) -> None:
    calls: list = []

    def evaluator(model) -> dict:
        calls.append(type(model).__name__)
        return {"scores": {"rte": float(len(calls))}, "bam_avg": float(len(calls)), "glue_avg": None}

    config = _config(tiny_train_values, train_cap={"rte": 16}, epochs=2.0)
    result = train(config, tmp_path / "run", quiet=True, evaluator=evaluator)
    assert calls == ["BamModel", "BamModel"]
    assert result.dev["bam_avg"] == 2.0  # the later, higher score is kept
