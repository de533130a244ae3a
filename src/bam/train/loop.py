"""The one training loop: teachers, the multi-task baseline and the BAM student.

What differs between them is configuration only: the task list, and where targets come from
(gold labels only, or gold mixed with recorded teacher outputs under a λ schedule). The loop runs
on ``accelerate``, so the same code trains on one CPU, one GPU or several processes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

from bam.config.train import TrainConfig, check_named_once, config_to_dict
from bam.cpu.dropout import use_cpu_dropout
from bam.cpu.machine import hardware
from bam.data.batching import epoch_plan, steps_per_epoch, task_shares
from bam.data.prepare import training_rows
from bam.distill import lambda_at
from bam.errors import BamError
from bam.extras import check_trackers
from bam.fileio import atomic_write_json, exclusive_folder, sha256_file
from bam.inference.evaluate import evaluate, load_eval_splits, summarize
from bam.model import MODEL_DIR, MODEL_FILE, BamModel, build_model, default_device, pad_id, save_bam_model
from bam.progress import progress_bar
from bam.tasks import check_task_keys, check_task_spelling, get_task
from bam.train.averaging import weight_average
from bam.train.batch_loss import batch_loss, load_task_data
from bam.train.checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DONE_FILE,
    check_output_dir,
    finished_run,
    load_checkpoint,
    remove_checkpoint,
    run_key,
    save_checkpoint,
    tidy_output_dir,
)
from bam.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("bam")


@dataclass
class TrainResult:
    output_dir: Path
    dev: dict[str, Any]  # summarize() of the kept model
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    examples_per_second: float = 0.0


def _tracker_config(config: TrainConfig) -> dict[str, Any]:
    flat = {}
    for key, value in config_to_dict(config).items():
        flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def longest_input(model: BamModel, tokenizer: Any) -> int | None:
    """The most tokens the encoder reads: the smaller of its position table and its tokenizer's
    limit (RoBERTa's 514 positions hold 512 tokens; a tokenizer without one says ~1e30)."""
    config = model.encoder.config
    absolute = getattr(config, "position_biased_input", True)  # DeBERTa's relative positions: no table
    candidates = [
        getattr(config, "max_position_embeddings", None) if absolute else None,
        getattr(tokenizer, "model_max_length", None),
    ]
    limits = [limit for limit in candidates if isinstance(limit, int) and limit < 1_000_000]
    return min(limits) if limits else None


def selection_score(dev: dict) -> float:
    """The dev score that picks the model to keep: BAM's average, or the mean of the task scores
    when no trained task counts towards it (WNLI alone: no average to compare)."""
    average = dev["bam_avg"]
    return average if average is not None else sum(dev["scores"].values()) / len(dev["scores"])


def _distributed_on_cpu() -> bool:
    """Several processes and no GPU: accelerate needs ``cpu=True`` to join them with gloo."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def train(
    config: TrainConfig,
    output_dir: str | Path,
    *,
    quiet: bool = False,
    cache_dir: Path | None = None,
    on_start: Callable[[], None] | None = None,
) -> TrainResult:
    """Train, evaluate on dev as configured, keep the best model in ``output_dir/model``.

    Resumes from ``output_dir/checkpoint`` after a crash or ``kill -9`` (on CPU the results are
    those of an unbroken run), returns the stored result of a finished run with the same
    :func:`run_key`, and refuses a folder holding a run of other settings, data or model, or one
    that another process is training. ``on_start`` runs once the data has been read and the run
    will train, so that what it prints never precedes a data error or a stored result.
    """
    with contextlib.ExitStack() as held:  # the folder's lock, once taken, lasts until the end
        return _train(config, Path(output_dir), quiet, cache_dir, held, on_start)


def _train(
    config: TrainConfig,
    output_dir: Path,
    quiet: bool,
    cache_dir: Path | None,
    held: contextlib.ExitStack,
    on_start: Callable[[], None] | None,
) -> TrainResult:
    started = time.perf_counter()
    tasks = [get_task(name) for name in config.tasks]
    if not tasks:
        raise BamError("tasks: at least one task is needed")
    trained = [task.name for task in tasks]
    check_named_once("tasks", trained)
    check_task_keys("teacher_outputs", config.teacher_outputs, trained)
    check_task_keys("sampling_boost", config.sampling_boost, trained)
    check_task_spelling("train_cap", config.train_cap)
    check_task_spelling("both_orders", config.both_orders)
    rows = [training_rows(task, config) for task in tasks]
    key = run_key(config, rows)
    check_output_dir(output_dir, config, key)
    finished = finished_run(output_dir, key)
    if finished is not None:
        if not quiet:
            log.info("%s: already trained with these settings and data", output_dir)
        return TrainResult(
            output_dir,
            finished["dev"],
            finished["history"],
            finished.get("seconds", 0.0),
            finished.get("examples_per_second", 0.0),
        )
    if on_start is not None:
        on_start()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    model, tokenizer = build_model(
        config.model,
        tasks,
        random_init=config.random_init,
        overrides=config.encoder_overrides,
        trust_remote_code=config.trust_remote_code,
        dropout=config.dropout,
        pooling=config.pooling,
    )
    limit = longest_input(model, tokenizer)
    if limit is not None and config.max_length > limit:
        raise BamError(f"max_length: {config.max_length} is more than {config.model} reads ({limit} tokens)")
    if config.dropout_rng == "sfc64":
        use_cpu_dropout(model)
    pad = pad_id(tokenizer)
    data = [
        load_task_data(task, examples, config, tokenizer, cache_dir)
        for task, examples in zip(tasks, rows, strict=True)
    ]
    eval_splits = load_eval_splits(tasks, config.data_dir, tokenizer, config.max_length, cache_dir)
    lengths = [d.features.lengths for d in data]

    kwargs = [DistributedDataParallelKwargs(find_unused_parameters=len(tasks) > 1)]
    log_with = [name for name in config.log_with if name]
    check_trackers(log_with)  # TensorBoard is an extra: refused now, not silently skipped
    default_device()  # more processes than GPUs: refused in words before accelerate fails on it
    try:
        accelerator = Accelerator(
            cpu=_distributed_on_cpu(),
            log_with=log_with or None,
            project_dir=str(output_dir / "logs"),
            kwargs_handlers=kwargs,
        )
    except ValueError as err:  # e.g. "Unsupported logging capability: tensorbord"
        if not log_with:
            raise
        raise BamError(f"log_with: {str(err).splitlines()[0]}") from None
    world, rank = accelerator.num_processes, accelerator.process_index
    if min(config.batch_size, sum(len(x) for x in lengths)) < world:
        raise BamError(f"batch_size: {config.batch_size} rows cannot be split across {world} processes")
    per_epoch = steps_per_epoch([len(x) for x in lengths], config.batch_size, min_rows=world)
    total_steps = max(1, math.ceil(config.epochs * per_epoch))
    eval_every = config.eval_every or per_epoch
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay, config.layerwise_decay)
    if accelerator.is_main_process:
        held.enter_context(exclusive_folder(output_dir))  # one writer per run folder
        tidy_output_dir(output_dir)
    accelerator.wait_for_everyone()
    average = weight_average(model, config.ema_decay)
    progress = load_checkpoint(output_dir / CHECKPOINT_DIR, model, optimizer, key, average)
    progress = progress or {
        "step": 0,
        "best": None,
        "history": [],
        "examples": 0,
        "seconds": 0.0,
        "loss_sum": 0.0,
        "loss_steps": 0,
    }
    earlier_seconds = progress.get("elapsed", 0.0)  # wall time of the attempts this run resumes
    scheduler = build_scheduler(optimizer, total_steps, config.warmup_fraction)
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(progress["step"]):
            scheduler.step()  # replay the schedule up to the resumed step
    model, optimizer = accelerator.prepare(model, optimizer)
    if average is not None:
        average.to(accelerator.device)
    if log_with:
        accelerator.init_trackers("bam", config=_tracker_config(config))
    if accelerator.is_main_process:
        atomic_write_json(output_dir / CONFIG_FILE, config_to_dict(config))

    boosts = [config.sampling_boost.get(d.task.name, 1.0) for d in data]
    shares = task_shares(
        {d.task.name: len(d.features) for d in data}, config.sampling_alpha, config.sampling_boost
    )
    model.train()
    bar = progress_bar(
        total=total_steps,
        initial=progress["step"],
        disable=quiet or not accelerator.is_main_process,
        desc="train " + ",".join(config.tasks),
        unit="step",
        dynamic_ncols=True,
    )
    plan, plan_epoch = [], -1
    tick = time.perf_counter()
    for step in range(progress["step"], total_steps):
        epoch, index = divmod(step, per_epoch)
        if epoch != plan_epoch:
            plan, plan_epoch = (
                epoch_plan(
                    lengths,
                    config.batch_size,
                    config.sampling_alpha,
                    config.seed,
                    epoch,
                    boosts=boosts,
                    min_rows=world,
                ),
                epoch,
            )
        batch = plan[index]
        lam = lambda_at(
            config.lambda_schedule, step, total_steps, config.lambda_constant, config.lambda_horizon
        )
        mine = slice(rank, None, world)
        loss_sum, per_task = batch_loss(
            model, data, batch.task_ids[mine], batch.rows[mine], lam, config, pad, accelerator.device
        )
        # DDP averages gradients over processes, so scale to the mean over the whole batch.
        accelerator.backward(loss_sum * world / len(batch.rows))
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        lr = optimizer.param_groups[-1]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if average is not None:
            average.update_parameters(accelerator.unwrap_model(model))
        step_loss = accelerator.reduce(loss_sum.detach(), reduction="sum").item() / len(batch.rows)
        if not math.isfinite(step_loss):  # every later step and score would be noise, reported as done
            raise BamError(
                f"step {step + 1}: the training loss is {step_loss} (training diverged; "
                f"try a lower learning_rate than {config.learning_rate:g})"
            )
        progress["examples"] += len(batch.rows)
        progress["loss_sum"] += step_loss
        progress["loss_steps"] += 1
        metrics = {"loss": step_loss, "lambda": lam, "lr": lr}
        metrics.update({f"loss/{name}": s / n for name, (s, n) in per_task.items()})
        if log_with:
            accelerator.log(metrics, step=step + 1)
        bar.set_postfix(loss=f"{step_loss:.4f}", lam=f"{lam:.2f}")
        bar.update(1)
        done = step + 1
        if done % eval_every == 0 or done == total_steps:
            progress["seconds"] += time.perf_counter() - tick
            kept = cast(BamModel, accelerator.unwrap_model(model) if average is None else average.module)
            summary = summarize(evaluate(kept, eval_splits, pad, config.eval_batch_size), tasks)
            tick = time.perf_counter()
            train_loss = progress["loss_sum"] / max(progress["loss_steps"], 1)
            progress["loss_sum"], progress["loss_steps"] = 0.0, 0
            entry = {"step": done, "epoch": done / per_epoch, "train_loss": train_loss, **summary}
            progress["history"].append(entry)
            if log_with:
                accelerator.log(
                    {f"dev/{k}": v for k, v in summary["scores"].items()}
                    | ({} if summary["bam_avg"] is None else {"dev/bam_avg": summary["bam_avg"]}),
                    step=done,
                )
            if not quiet and accelerator.is_main_process:
                scores = " ".join(f"{k}={v:.2f}" for k, v in summary["scores"].items())
                shown = "none" if summary["bam_avg"] is None else f"{summary['bam_avg']:.2f}"
                bar.write(f"step {done}/{total_steps} dev {scores} avg={shown}")
            better = progress["best"] is None or selection_score(entry) > selection_score(progress["best"])
            if (better or not config.keep_best) and accelerator.is_main_process:
                save_bam_model(
                    kept,
                    tokenizer,
                    output_dir / MODEL_DIR,
                    {"train_config": config_to_dict(config), "dev": entry},
                )
            if better or not config.keep_best:
                progress["best"] = entry
        checkpoint_due = config.checkpoint_every and done % config.checkpoint_every == 0
        if (checkpoint_due or done % per_epoch == 0) and done < total_steps and accelerator.is_main_process:
            progress["seconds"] += time.perf_counter() - tick
            tick = time.perf_counter()
            save_checkpoint(
                output_dir / CHECKPOINT_DIR,
                accelerator.unwrap_model(model),
                optimizer,
                {
                    **progress,
                    "step": done,
                    "total_steps": total_steps,
                    "run_key": key,
                    "elapsed": earlier_seconds + time.perf_counter() - started,
                },
                average,
            )
        accelerator.wait_for_everyone()
    bar.close()
    progress["seconds"] += time.perf_counter() - tick
    if log_with:
        accelerator.end_training()
    result = TrainResult(
        output_dir=output_dir,
        dev=progress["best"],
        history=progress["history"],
        seconds=earlier_seconds + time.perf_counter() - started,
        examples_per_second=progress["examples"] / max(progress["seconds"], 1e-9),
    )
    if accelerator.is_main_process:
        atomic_write_json(
            output_dir / DONE_FILE,
            {
                "run_key": key,
                "dev": result.dev,
                "history": result.history,
                "shares": shares,
                "total_steps": total_steps,
                "seconds": result.seconds,
                "examples_per_second": result.examples_per_second,
                "model_sha256": sha256_file(output_dir / MODEL_DIR / MODEL_FILE),
                "hardware": hardware(accelerator.device, accelerator.num_processes),
            },
        )
        remove_checkpoint(output_dir / CHECKPOINT_DIR)
    return result


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
