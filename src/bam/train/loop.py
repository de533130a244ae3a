"""The one training loop: teachers, the multi-task baseline and the BAM student.

What differs between them is configuration only: the task list, and where targets come from
(gold labels only, or gold mixed with recorded teacher outputs under a λ schedule). The loop runs
on ``accelerate``, so the same code trains on one CPU, one GPU or several processes, in the
precision the stage resolved (:mod:`bam.precision`).

It reads as four named steps: :func:`~bam.train.setup.set_up` (model, data, optimizer, resume),
:func:`take_step` (one batch: forward, loss, backward, clip, optimizer), :func:`evaluate_and_keep`
(dev scores, keep the best) and :func:`finish` (the stage record, clean-up). ``on_step`` and
``evaluator`` let benchmarks and tests watch or replace parts of it without patching names.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bam.config.train import TrainConfig, config_to_dict
from bam.cpu.machine import hardware
from bam.data.batching import PlannedBatch
from bam.distill import lambda_at
from bam.errors import BamError
from bam.fileio import atomic_write_json, sha256_file
from bam.inference.evaluate import evaluate, summarize
from bam.model import MODEL_DIR, MODEL_FILE, BamModel, save_bam_model
from bam.precision import autocast
from bam.progress import progress_bar
from bam.train.batch_loss import batch_loss
from bam.train.checkpoint import CHECKPOINT_DIR, DONE_FILE, check_output_dir, finished_run, tidy_finished_dir
from bam.train.checkpoint import save_checkpoint as write_checkpoint
from bam.train.sampling import Sampler
from bam.train.setup import Run, read_run, set_up

log = logging.getLogger("bam")
Evaluator = Callable[[BamModel], dict[str, Any]]  # a model → summarize()'s {"scores", "bam_avg", ...}


@dataclass
class TrainResult:
    output_dir: Path
    dev: dict[str, Any]  # summarize() of the kept model
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    examples_per_second: float = 0.0
    precision: str = "fp32"


@dataclass
class StepInfo:
    """What one optimizer step did, for ``on_step`` observers (benchmarks, progress, tests)."""

    step: int  # 1-based, after the optimizer step
    total_steps: int
    loss: float  # mean over the whole batch (every process's rows)
    lam: float
    lr: float
    rows: int  # rows in the whole batch (every process's)
    tokens: list[int]  # unpadded lengths of the rows this process trained
    padded_tokens: int  # rows × padded length this process computed
    seconds: float  # wall time of the step: forward, backward, optimizer
    started: float  # time.perf_counter() at the step's start
    per_task: dict[str, float] = field(default_factory=dict)  # mean loss per task


def selection_score(dev: dict) -> float:
    """The dev score that picks the model to keep: BAM's average, or the mean of the task scores
    when no trained task counts towards it (WNLI alone: no average to compare)."""
    average = dev["bam_avg"]
    return average if average is not None else sum(dev["scores"].values()) / len(dev["scores"])


def train(
    config: TrainConfig,
    output_dir: str | Path,
    *,
    quiet: bool = False,
    cache_dir: Path | None = None,
    on_start: Callable[[], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    evaluator: Evaluator | None = None,
) -> TrainResult:
    """Train, evaluate on dev as configured, keep the best model in ``output_dir/model``.

    Resumes from ``output_dir/checkpoint`` after a crash or ``kill -9`` (on CPU the results are
    those of an unbroken run), returns the stored result of a finished run with the same key
    (:func:`~bam.train.keys.run_keys`), and refuses a folder holding a run of other
    settings, data or model, or one that another process is training. ``on_start`` runs once the
    data has been read and the run will train, so that what it prints never precedes a data
    error or a stored result. ``evaluator`` replaces the dev evaluation (no dev rows are read).
    """
    output_dir = Path(output_dir)
    rows = read_run(config)
    check_output_dir(output_dir, config, rows.keys)
    finished = finished_run(output_dir, rows.keys)
    if finished is not None:
        if not quiet:
            log.info("%s: already trained with these settings and data", output_dir)
        return _stored_result(output_dir, finished)
    if on_start is not None:
        on_start()
    with contextlib.ExitStack() as held:  # the folder's lock, once taken, lasts until the end
        started = time.perf_counter()
        run = set_up(config, output_dir, rows, held, cache_dir, own_evaluator=evaluator is not None)
        evaluator = evaluator or _dev_evaluator(run)
        _train_steps(run, evaluator, on_step, quiet, started)
        return finish(run, started)


def _train_steps(
    run: Run, evaluator: Evaluator, on_step: Callable[[StepInfo], None] | None, quiet: bool, started: float
) -> None:
    """Every step from the resumed one to the last, with evaluations and checkpoints between."""
    config, progress = run.config, run.progress
    bar = progress_bar(
        total=run.total_steps,
        initial=progress["step"],
        disable=quiet or not run.accelerator.is_main_process,
        desc="train " + ",".join(config.tasks),
        unit="step",
        dynamic_ncols=True,
    )
    run.model.train()
    sampler = Sampler(run)  # an epoch's batches: a pure function of (seed, epoch) and the recorded shares
    tick = time.perf_counter()
    for step in range(progress["step"], run.total_steps):
        batch = sampler.batch(step)
        lam = lambda_at(
            config.lambda_schedule, step, run.total_steps, config.lambda_constant, config.lambda_horizon
        )
        info = take_step(run, batch, step, lam)
        _record_step(run, info, bar)
        if on_step is not None:
            on_step(info)
        done = step + 1
        if done % run.eval_every == 0 or done == run.total_steps:
            progress["seconds"] += time.perf_counter() - tick
            evaluate_and_keep(run, evaluator, done, bar, quiet)
            tick = time.perf_counter()
        checkpoint_due = config.checkpoint_every and done % config.checkpoint_every == 0
        if (checkpoint_due or done % run.per_epoch == 0) and done < run.total_steps:
            progress["seconds"] += time.perf_counter() - tick
            save_checkpoint(run, done, started)
            tick = time.perf_counter()
        run.accelerator.wait_for_everyone()
    bar.close()
    progress["seconds"] += time.perf_counter() - tick


def take_step(run: Run, batch: PlannedBatch, step: int, lam: float) -> StepInfo:
    """One optimizer step on ``batch``: this process's share of its rows, in
    ``gradient_accumulation_steps`` slices whose gradients add up to the whole batch's."""
    accelerator, model, optimizer = run.accelerator, run.model, run.optimizer
    world, rank = accelerator.num_processes, accelerator.process_index
    began = time.perf_counter()
    mine = np.arange(rank, len(batch.rows), world)
    lengths = _row_lengths(run, batch.task_ids[mine], batch.rows[mine])
    slices = [s for s in np.array_split(mine, run.config.gradient_accumulation_steps) if len(s)]
    loss_sum = torch.zeros((), device=accelerator.device)
    per_task: dict[str, tuple[float, int]] = {}
    for number, part in enumerate(slices):
        task_ids, rows = batch.task_ids[part], batch.rows[part]
        last = number == len(slices) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            with autocast(run.precision, accelerator.device):
                loss, task_losses = batch_loss(
                    model, run.data, task_ids, rows, lam, run.config, run.pad, accelerator.device
                )
            # DDP averages gradients over processes, so scale to the mean over the whole batch.
            mean = loss * world / len(batch.rows)
            accelerator.backward(mean if run.scaler is None else run.scaler.scale(mean))
        loss_sum += loss.detach()
        for name, (total, count) in task_losses.items():
            seen = per_task.get(name, (0.0, 0))
            per_task[name] = (seen[0] + total, seen[1] + count)
    if run.scaler is not None:
        run.scaler.unscale_(optimizer)  # clip the true gradients
    accelerator.clip_grad_norm_(model.parameters(), run.config.max_grad_norm)
    lr = optimizer.param_groups[-1]["lr"]
    if run.scaler is None:
        optimizer.step()
    else:  # skips the step when fp16 gradients overflowed, and adapts the scale
        run.scaler.step(optimizer)
        run.scaler.update()
    run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if run.average is not None:
        run.average.update_parameters(accelerator.unwrap_model(model))
    step_loss = accelerator.reduce(loss_sum, reduction="sum").item() / len(batch.rows)
    if not math.isfinite(step_loss):  # every later step and score would be noise, reported as done
        raise BamError(
            f"step {step + 1}: the training loss is {step_loss} (training diverged; "
            f"try a lower learning_rate than {run.config.learning_rate:g})"
        )
    # Each slice is padded to its longest row (bam.data.batching.collate).
    padded = sum(len(part) * int(part.max()) for part in np.array_split(lengths, len(slices)))
    return StepInfo(
        step=step + 1,
        total_steps=run.total_steps,
        loss=step_loss,
        lam=lam,
        lr=lr,
        rows=len(batch.rows),
        tokens=lengths.tolist(),
        padded_tokens=padded,
        seconds=time.perf_counter() - began,
        started=began,
        per_task={name: total / count for name, (total, count) in per_task.items()},
    )


def _row_lengths(run: Run, task_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Tokens in each of a batch's rows, unpadded: one lookup per task, not per row."""
    lengths = np.empty(len(rows), dtype=np.int64)
    for task in np.unique(task_ids):
        where = task_ids == task
        lengths[where] = run.data[task].features.lengths[rows[where]]
    return lengths


def _record_step(run: Run, info: StepInfo, bar: Any) -> None:
    progress = run.progress
    progress["examples"] += info.rows
    progress["loss_sum"] += info.loss
    progress["loss_steps"] += 1
    if run.log_with:
        metrics = {"loss": info.loss, "lambda": info.lam, "lr": info.lr}
        metrics.update({f"loss/{name}": value for name, value in info.per_task.items()})
        run.accelerator.log(metrics, step=info.step)
    bar.set_postfix(loss=f"{info.loss:.4f}", lam=f"{info.lam:.2f}")
    bar.update(1)


def _dev_evaluator(run: Run) -> Evaluator:
    """Dev scores of a model, in the stage's precision: the default evaluator."""
    assert run.eval_splits is not None
    splits, tasks = run.eval_splits, run.tasks

    def on_dev(model: BamModel) -> dict[str, Any]:
        outputs = evaluate(model, splits, run.pad, run.config.eval_batch_size, run.precision)
        return summarize(outputs, tasks)

    return on_dev


def evaluate_and_keep(run: Run, evaluator: Evaluator, done: int, bar: Any, quiet: bool) -> None:
    """Score the kept model (the weight average, if any) and save it when it is the best so far
    (or always, with ``keep_best: false``)."""
    progress, accelerator = run.progress, run.accelerator
    summary = evaluator(run.kept_model)
    train_loss = progress["loss_sum"] / max(progress["loss_steps"], 1)
    progress["loss_sum"], progress["loss_steps"] = 0.0, 0
    entry = {"step": done, "epoch": done / run.per_epoch, "train_loss": train_loss, **summary}
    progress["history"].append(entry)
    if run.log_with:
        average = {} if summary["bam_avg"] is None else {"dev/bam_avg": summary["bam_avg"]}
        accelerator.log({f"dev/{k}": v for k, v in summary["scores"].items()} | average, step=done)
    if not quiet and accelerator.is_main_process:
        scores = " ".join(f"{k}={v:.2f}" for k, v in summary["scores"].items())
        shown = "none" if summary["bam_avg"] is None else f"{summary['bam_avg']:.2f}"
        bar.write(f"step {done}/{run.total_steps} dev {scores} avg={shown}")
    best = progress["best"]
    if best is None or selection_score(entry) > selection_score(best) or not run.config.keep_best:
        progress["best"] = entry
        if accelerator.is_main_process:
            record = {"train_config": config_to_dict(run.config), "dev": entry, **run.precision.record()}
            save_bam_model(run.kept_model, run.tokenizer, run.output_dir / MODEL_DIR, record)


def save_checkpoint(run: Run, done: int, started: float) -> None:
    """A resumable checkpoint after step ``done`` (main process only)."""
    if not run.accelerator.is_main_process:
        return
    state = {
        **run.progress,
        "step": done,
        "total_steps": run.total_steps,
        "run_key": run.key,
        "elapsed": run.earlier_seconds + time.perf_counter() - started,
    }
    write_checkpoint(
        run.output_dir / CHECKPOINT_DIR,
        run.accelerator.unwrap_model(run.model),
        run.optimizer,
        state,
        run.average,
    )


def finish(run: Run, started: float) -> TrainResult:
    """The stage record (``train_done.json``), then the checkpoint is removed: a finished stage
    holds its model, metrics and record only."""
    progress, accelerator = run.progress, run.accelerator
    if run.log_with:
        accelerator.end_training()
    result = TrainResult(
        output_dir=run.output_dir,
        dev=progress["best"],
        history=progress["history"],
        seconds=run.earlier_seconds + time.perf_counter() - started,
        examples_per_second=progress["examples"] / max(progress["seconds"], 1e-9),
        precision=run.precision.name,
    )
    if accelerator.is_main_process:
        atomic_write_json(
            run.output_dir / DONE_FILE,
            {
                "run_key": run.key,
                "dev": result.dev,
                "history": result.history,
                "shares": run.shares,
                **({"shares_over_training": progress["sampling"]} if "sampling" in progress else {}),
                "total_steps": run.total_steps,
                "seconds": result.seconds,
                "examples_per_second": result.examples_per_second,
                "model_sha256": sha256_file(run.output_dir / MODEL_DIR / MODEL_FILE),
                "hardware": hardware(accelerator.device, accelerator.num_processes),
                **run.precision.record(),
            },
        )
        tidy_finished_dir(run.output_dir)  # no checkpoint, no temporary file left
    return result


def _stored_result(output_dir: Path, finished: dict[str, Any]) -> TrainResult:
    return TrainResult(
        output_dir,
        finished["dev"],
        finished["history"],
        finished.get("seconds", 0.0),
        finished.get("examples_per_second", 0.0),
        finished.get("precision", "fp32"),
    )
