"""The first of the loop's named steps: everything a training run needs before its first step.

:func:`read_run` checks the settings against the tasks and reads the rows (cheap, so a finished
run or a data error is known before a model is built); :func:`set_up` builds the model, reads the
teacher outputs, prepares the devices and precision through ``accelerate``, and restores a
checkpoint if there is one. What it returns, a :class:`Run`, is what the other steps share.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch.optim.swa_utils import AveragedModel

from bam.config.train import TrainConfig, check_named_once, config_to_dict
from bam.cpu.dropout import use_cpu_dropout
from bam.data.batching import steps_per_epoch, task_shares
from bam.data.examples import Examples
from bam.data.prepare import training_rows
from bam.errors import BamError
from bam.extras import check_trackers
from bam.fileio import atomic_write_json, exclusive_folder
from bam.inference.evaluate import EvalSplit, load_eval_splits
from bam.model import (
    MODEL_FILE,
    BamModel,
    build_model,
    default_device,
    load_weights,
    pad_id,
    read_model_meta,
    read_weights,
    resolve_model_dir,
)
from bam.precision import Precision, allow_tf32, resolve_precision
from bam.tasks import check_per_task_keys, get_task
from bam.tasks.spec import TaskSpec
from bam.train.averaging import weight_average
from bam.train.batch_loss import TaskData, load_task_data
from bam.train.checkpoint import CHECKPOINT_DIR, CONFIG_FILE, load_checkpoint, tidy_output_dir
from bam.train.keys import run_keys
from bam.train.optim import build_optimizer, build_scheduler

FRESH_PROGRESS: dict[str, Any] = {
    "step": 0,
    "best": None,
    "history": [],
    "examples": 0,
    "seconds": 0.0,
    "loss_sum": 0.0,
    "loss_steps": 0,
}


@dataclass
class RunRows:
    """A run's tasks, training rows and keys: what decides whether there is anything to train."""

    tasks: list[TaskSpec]
    rows: list[Examples]
    keys: list[str]  # today's key first (bam.train.keys.run_keys)


@dataclass
class Run:
    """What :func:`set_up` prepared, shared by the step, evaluate and finish steps."""

    config: TrainConfig
    output_dir: Path
    tasks: list[TaskSpec]
    key: str  # the key this folder's checkpoints and record carry
    model: BamModel  # prepared by accelerate (DDP-wrapped under several processes)
    tokenizer: Any
    pad: int
    data: list[TaskData]
    eval_splits: list[EvalSplit] | None  # None: an evaluator was given
    accelerator: Accelerator
    optimizer: Any
    scheduler: torch.optim.lr_scheduler.LambdaLR
    average: AveragedModel | None
    precision: Precision
    scaler: torch.amp.GradScaler | None  # fp16's loss scaling
    per_epoch: int
    total_steps: int
    eval_every: int
    shares: dict[str, float]
    log_with: list[str]
    progress: dict[str, Any]  # what a checkpoint stores: step, best, history, counters
    earlier_seconds: float  # wall time of the attempts this run resumes

    @property
    def lengths(self) -> list[Any]:
        return [d.features.lengths for d in self.data]

    @property
    def kept_model(self) -> BamModel:
        """The model that is evaluated and saved: the weight average when there is one."""
        if self.average is not None:
            return self.average.module  # type: ignore[return-value]
        return self.accelerator.unwrap_model(self.model)  # type: ignore[no-any-return]


def read_run(config: TrainConfig) -> RunRows:
    """The tasks and their training rows, with every per-task setting checked against them."""
    tasks = [get_task(name) for name in config.tasks]
    if not tasks:
        raise BamError("tasks: at least one task is needed")
    trained = [task.name for task in tasks]
    check_named_once("tasks", trained)
    check_per_task_keys(config, trained)
    check_trackers(config.log_with)  # TensorBoard is an extra: refused now, not silently skipped
    rows = [training_rows(task, config) for task in tasks]
    return RunRows(tasks, rows, run_keys(config, rows))


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


def _distributed_on_cpu() -> bool:
    """Several processes and no GPU: accelerate needs ``cpu=True`` to join them with gloo."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _accelerator(config: TrainConfig, output_dir: Path, multitask: bool) -> Accelerator:
    log_with = [name for name in config.log_with if name]
    try:
        return Accelerator(
            cpu=_distributed_on_cpu(),
            # bam autocasts each stage itself (bam.precision): accelerate's mixed precision is one
            # setting per process, and a bam run trains stages of several precisions in one.
            mixed_precision="no",
            log_with=log_with or None,
            project_dir=str(output_dir / "logs"),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=multitask)],
        )
    except ValueError as err:  # e.g. "Unsupported logging capability: tensorbord"
        if not log_with:
            raise
        raise BamError(f"log_with: {str(err).splitlines()[0]}") from None


def build_run_model(config: TrainConfig, tasks: list[TaskSpec]) -> tuple[BamModel, Any]:
    """The model and tokenizer a run of ``config`` trains (also timed by ``bam run --dry-run``)."""
    torch.manual_seed(config.seed)
    model, tokenizer = build_model(
        config.model,
        tasks,
        random_init=config.random_init,
        overrides=config.encoder_overrides,
        trust_remote_code=config.trust_remote_code,
        dropout=config.dropout,
        pooling=config.pooling,
        attention=config.attention,
    )
    if config.init_model:
        start_from(model, config.init_model, config.model)
    limit = longest_input(model, tokenizer)
    if limit is not None and config.max_length > limit:
        raise BamError(f"max_length: {config.max_length} is more than {config.model} reads ({limit} tokens)")
    if config.dropout_rng == "sfc64":
        use_cpu_dropout(model)
    if config.compile:
        model.encoder.compile()  # in place: the state dict keeps its names
    return model, tokenizer


def start_from(model: BamModel, folder: str, encoder: str) -> None:
    """Put a trained bam model's encoder and, for each of ``model``'s tasks, its head into ``model``
    (the source's other heads are left out): fine-tuning begins where that model's training ended.
    Strict: every weight of ``model`` must come from the source, with the same shape."""
    try:
        model_dir = resolve_model_dir(folder)
        heads = {str(head.get("task")): head for head in read_model_meta(model_dir).get("heads", [])}
    except (BamError, AttributeError) as err:  # AttributeError: a head that is not a mapping
        raise BamError(f"init_model: {err}") from None
    for task, spec in model.head_specs.items():
        theirs = heads.get(task)
        if theirs is None:
            raise BamError(f"init_model: {model_dir} has no head for {task} (its heads: {', '.join(heads)})")
        if [theirs.get("kind"), theirs.get("labels")] != [spec.kind, list(spec.labels)]:
            raise BamError(
                f"init_model: {model_dir}'s {task} head predicts {theirs.get('kind')} "
                f"{theirs.get('labels')}, not {spec.kind} {list(spec.labels)}"
            )
    path = model_dir / MODEL_FILE
    kept = {
        key: weights
        for key, weights in read_weights(path).items()
        if key.startswith("encoder.") or (key.startswith("heads.") and key.split(".")[1] in model.head_specs)
    }
    load_weights(model, kept, path, f"this run's model ({encoder}, heads {', '.join(model.head_specs)})")


def set_up(
    config: TrainConfig,
    output_dir: Path,
    rows: RunRows,
    held: contextlib.ExitStack,
    cache_dir: Path | None = None,
    own_evaluator: bool = False,
) -> Run:
    """Build, prepare and (from a checkpoint) restore everything the run's steps need."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    default_device()  # more processes than GPUs: refused in words before accelerate fails on it
    precision = resolve_precision(config.precision, default_device())
    allow_tf32()
    model, tokenizer = build_run_model(config, rows.tasks)
    data = [
        load_task_data(task, examples, config, tokenizer, cache_dir)
        for task, examples in zip(rows.tasks, rows.rows, strict=True)
    ]
    eval_splits = None
    if not own_evaluator:
        eval_splits = load_eval_splits(rows.tasks, config.data_dir, tokenizer, config.max_length, cache_dir)
    accelerator = _accelerator(config, output_dir, len(rows.tasks) > 1)
    world = accelerator.num_processes
    lengths = [d.features.lengths for d in data]
    if min(config.batch_size, sum(len(x) for x in lengths)) < world:
        raise BamError(f"batch_size: {config.batch_size} rows cannot be split across {world} processes")
    per_epoch = steps_per_epoch([len(x) for x in lengths], config.batch_size, min_rows=world)
    total_steps = max(1, math.ceil(config.epochs * per_epoch))
    optimizer = build_optimizer(model, config.learning_rate, config.weight_decay, config.layerwise_decay)
    if accelerator.is_main_process:
        held.enter_context(exclusive_folder(output_dir))  # one writer per run folder
        tidy_output_dir(output_dir)
    accelerator.wait_for_everyone()
    average = weight_average(model, config.ema_decay)
    restored = load_checkpoint(output_dir / CHECKPOINT_DIR, model, optimizer, rows.keys, average)
    progress = restored or {**FRESH_PROGRESS, "history": []}
    scheduler = build_scheduler(optimizer, total_steps, config.warmup_fraction)
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(progress["step"]):
            scheduler.step()  # replay the schedule up to the resumed step
    model, optimizer = accelerator.prepare(model, optimizer)
    if average is not None:
        average.to(accelerator.device)
    log_with = [name for name in config.log_with if name]
    if log_with:
        accelerator.init_trackers("bam", config=_tracker_config(config))
    if accelerator.is_main_process:
        atomic_write_json(output_dir / CONFIG_FILE, config_to_dict(config))
    return Run(
        config=config,
        output_dir=output_dir,
        tasks=rows.tasks,
        key=progress.get("run_key", rows.keys[0]),
        model=model,
        tokenizer=tokenizer,
        pad=pad_id(tokenizer),
        data=data,
        eval_splits=eval_splits,
        accelerator=accelerator,
        optimizer=optimizer,
        scheduler=scheduler,
        average=average,
        precision=precision,
        scaler=torch.amp.GradScaler(accelerator.device.type) if precision.name == "fp16" else None,
        per_epoch=per_epoch,
        total_steps=total_steps,
        eval_every=config.eval_every or per_epoch,
        shares=task_shares(
            {d.task.name: len(d.features) for d in data}, config.sampling_alpha, config.sampling_boost
        ),
        log_with=log_with,
        progress=progress,
        earlier_seconds=progress.get("elapsed", 0.0),
    )


def _tracker_config(config: TrainConfig) -> dict[str, Any]:
    flat = {}
    for key, value in config_to_dict(config).items():
        flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat
