"""The two training loops the benchmarks time, each through its public hooks: bam's ``train()``
(``on_step``, ``evaluator``) and ``transformers.Trainer`` (a ``TrainerCallback``).

Both are timed the same way: from the start of the first timed step to the end of the last, with
model loading and tokenization outside the window, and both get the same rows (bam's sampler's
epoch, handed to the Trainer as a dataset; each side checks the multiset of row lengths it
trained, :func:`lengths_digest`). Not a benchmark itself: ``.ci/run`` does not run it.
``scripts/trainer_single.py`` (issue #30) builds its Trainer with :func:`hf_classifier` and
:func:`length_grouping`.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bam.flops import FlopModel, flop_model  # the one FLOP formula, as bam run --dry-run counts
from common import glue_mix

# ----------------------------------------------------------------------------- bam's own loop


@dataclass
class StepLog:
    """What a timed run of ``bam.train.loop.train`` did, step by step (from its ``on_step`` hook)."""

    starts: list[float] = field(default_factory=list)  # perf_counter at each step's start
    lengths: list[list[int]] = field(default_factory=list)  # real lengths of each batch's rows
    padded: list[int] = field(default_factory=list)  # rows × padded length computed in each step
    end: float = 0.0  # perf_counter at the end of the last step
    loop_examples_per_second: float = 0.0  # the loop's own figure (includes warm-up steps)
    precision: str = ""  # the precision that ran, as the loop recorded it
    flop_model: FlopModel | None = None

    def window(self, warmup: int) -> tuple[float, list[list[int]]]:
        """Seconds and batches of the steps after ``warmup`` (to the end of the last step)."""
        return self.end - self.starts[warmup], self.lengths[warmup:]

    def summary(self, warmup: int = 0) -> dict[str, Any]:
        """:func:`summary` of the steps after ``warmup``, with the precision that ran."""
        seconds, batches = self.window(warmup)
        result = summary(seconds, batches, self.padded[warmup:], self.flop_model)
        result["precision"] = self.precision
        return result


def _skip_dev(log: StepLog) -> Callable[[Any], dict[str, Any]]:
    """An evaluator that evaluates nothing (dev passes are not training and would dominate a
    30-step run) and counts the model's FLOP parameters on its first call."""

    def evaluator(model: Any) -> dict[str, Any]:
        if log.flop_model is None:
            log.flop_model = flop_model(model)
        return {"scores": dict.fromkeys(model.head_specs, 0.0), "bam_avg": 0.0, "glue_avg": 0.0}

    return evaluator


def timed_bam_train(config: Any, output_dir: Path, cache_dir: Path) -> StepLog:
    """Run bam's real ``train()`` and record, through its public hooks, when each step starts and
    ends and which rows it holds. Everything a step does (collate, forward, losses, backward,
    clipping, AdamW, schedule, logging) runs unchanged; dev evaluation is replaced through the
    ``evaluator`` hook; saving the model after the last step is outside the window."""
    from bam.train.loop import StepInfo, train

    log = StepLog()

    def on_step(info: StepInfo) -> None:
        log.starts.append(info.started)
        log.lengths.append([int(n) for n in info.tokens])
        log.padded.append(int(info.padded_tokens))
        log.end = info.started + info.seconds

    result = train(
        config, output_dir, quiet=True, cache_dir=cache_dir, on_step=on_step, evaluator=_skip_dev(log)
    )
    if not log.starts:
        raise RuntimeError(f"{output_dir}: train() returned without calling on_step (a finished run?)")
    log.loop_examples_per_second = result.examples_per_second
    log.precision = str(getattr(result, "precision", "") or "")
    return log


def epochs_for_steps(steps: int, steps_per_epoch: int) -> float:
    """The ``epochs`` value that makes bam's loop run exactly ``steps`` steps (ceil-safe)."""
    return (steps - 0.5) / steps_per_epoch


def bam_config(encoder: dict[str, Any], tasks: Sequence[str], per_task: int, **settings: Any) -> Any:
    """The benchmarks' bam stage: ``per_task`` rows of each task (``train_cap``), [CLS] pooling (what
    the Trainer's ``BertForSequenceClassification`` reads: the same work), no checkpoints, no
    logging; ``settings`` (batch_size, epochs, precision, ...) override."""
    from bam.config.train import TrainConfig

    defaults: dict[str, Any] = {
        "pooling": "cls",
        "train_cap": dict.fromkeys(tasks, per_task),
        "checkpoint_every": 0,
        "num_threads": 2,
        "log_with": [],
    }
    return TrainConfig(tasks=list(tasks), **encoder, **{**defaults, **settings})


def lengths_digest(batches: Sequence[Sequence[int]]) -> str:
    """A digest of the multiset of row lengths trained: equal on both sides = the same rows."""
    lengths = sorted(int(n) for batch in batches for n in batch)
    return hashlib.sha256(",".join(map(str, lengths)).encode()).hexdigest()[:16]


def summary(
    seconds: float, batches: list[list[int]], padded: Sequence[int], model: FlopModel | None = None
) -> dict[str, Any]:
    """Rates of a timed window: examples/s, real tokens/s, padding, and model FLOP/s (real tokens;
    ``padded_flops``: what the padded batches cost) when the model's counts are known."""
    rows = sum(len(b) for b in batches)
    real = sum(sum(b) for b in batches)
    result = {
        "seconds": seconds,
        "steps": len(batches),
        "examples_per_second": rows / seconds,
        "real_tokens_per_second": real / seconds,
        "mean_length": real / rows,
        "pad_fraction": 1 - real / sum(padded),
        "lengths_digest": lengths_digest(batches),
    }
    if model is not None:
        widths = [size // len(b) for b, size in zip(batches, padded, strict=True)]
        result["flops"] = sum(model.flops(b, train=True) for b in batches) / seconds
        result["padded_flops"] = (
            sum(model.flops([w] * len(b), train=True) for b, w in zip(batches, widths, strict=True)) / seconds
        )
    return result


# ----------------------------------------------------------------------------- transformers.Trainer


def epoch_rows(config: Any, tokenizer: Any) -> tuple[list[Any], list[tuple[int, int]]]:
    """Each task's rows under ``config`` and the (task, row) pairs of bam's first epoch, in plan
    order: what the Trainer is given, so that both sides train the same examples."""
    from bam.data.batching import epoch_plan
    from bam.data.features import tokenize

    examples = glue_mix(config.tasks, next(iter(config.train_cap.values())))
    lengths = [tokenize(e, tokenizer, config.max_length).lengths for e in examples]
    plan = epoch_plan(lengths, config.batch_size, config.sampling_alpha, config.seed, 0)
    pairs = [(int(t), int(r)) for batch in plan for t, r in zip(batch.task_ids, batch.rows, strict=True)]
    return examples, pairs


def trainer_dataset(config: Any, tokenizer: Any, pad_to_max: bool) -> Any:
    """bam's epoch as a ``datasets.Dataset`` (one 2-way label for every row: the same encoder work;
    STS-B's scores split at 2.5); ``pad_to_max``: every row padded to 128, as ``run_glue.py``."""
    import datasets
    import numpy as np

    from bam.tasks import get_task

    examples, pairs = epoch_rows(config, tokenizer)
    encoded, labels = [], []
    padding = "max_length" if pad_to_max else False
    for item in examples:
        encoded.append(tokenizer(*item.texts, truncation=True, max_length=config.max_length, padding=padding))
        values = np.asarray(item.labels)
        if get_task(item.task).kind == "regression":
            values = (values >= 2.5).astype(np.int64)
        labels.append([int(x) for x in values])
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded[0]]
    columns = {key: [encoded[t][key][r] for t, r in pairs] for key in keys}
    columns["labels"] = [labels[t][r] for t, r in pairs]
    return datasets.Dataset.from_dict(columns)


def hf_classifier(encoder: dict[str, Any], num_labels: int = 2, **settings: Any) -> Any:
    """An ``AutoModelForSequenceClassification`` on the encoder bam trains (same folder, or the
    same random shape under --check); ``settings`` are config keys (dropout) that the encoder's
    ``encoder_overrides`` win over, as in ``bam.model.load_encoder``. Also used by
    ``scripts/trainer_single.py``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from bam.model import resolve_encoder_path

    path = resolve_encoder_path(encoder["model"])
    values = {**settings, **encoder.get("encoder_overrides", {})}
    config = AutoConfig.from_pretrained(path, num_labels=num_labels, **values)
    if encoder.get("random_init"):
        return AutoModelForSequenceClassification.from_config(config)
    return AutoModelForSequenceClassification.from_pretrained(path, config=config)


@dataclass
class TrainerRun:
    """One Trainer configuration: mixed precision, length grouping and padding as named."""

    bf16: bool = False
    group_by_length: bool = True
    pad_to_max: bool = False  # run_glue.py's default: every batch 32×128, random order
    use_cpu: bool = True


# TrainingArguments of a Trainer that trains only: no evaluation, checkpoints, logs, reports or
# progress bars, and no data-loading workers (the rows are already tokenized in memory).
QUIET_TRAINER: dict[str, Any] = {
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
}


def length_grouping(enabled: bool) -> dict[str, Any]:
    """``TrainingArguments`` keys for length-grouped (or random) batches, in the spelling of the
    installed transformers (v5: ``train_sampling_strategy``; v4: ``group_by_length``)."""
    from transformers import TrainingArguments

    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:  # transformers v5
        return {"train_sampling_strategy": "group_by_length" if enabled else "random"}
    return {"group_by_length": enabled}


def _training_arguments(run: TrainerRun, config: Any, folder: str, max_steps: int, steps: int) -> Any:
    from transformers import TrainingArguments

    grouping = length_grouping(run.group_by_length)
    return TrainingArguments(
        output_dir=folder,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=0.01,
        max_grad_norm=1.0,
        num_train_epochs=1,
        max_steps=max_steps,
        warmup_steps=round(steps * config.warmup_fraction),
        lr_scheduler_type="linear",
        bf16=run.bf16,
        **QUIET_TRAINER,
        dataloader_pin_memory=not run.use_cpu,
        use_cpu=run.use_cpu,
        seed=13,
        **grouping,
    )


def timed_trainer(
    run: TrainerRun, config: Any, encoder: dict[str, Any], warmup_steps: int, timed_steps: int = -1
) -> dict[str, Any]:
    """``Trainer.train()`` on bam's epoch of ``config``: a short warm-up run first (its own model),
    then ``timed_steps`` steps (-1: the whole epoch) of a fresh model, timed from the first step's
    start to the last step's end (the GPU synchronised there). Returns :func:`summary`."""
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        default_data_collator,
    )

    from bam.model import resolve_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path(encoder["model"]))
    dataset = trainer_dataset(config, tokenizer, run.pad_to_max)
    base_collator = default_data_collator if run.pad_to_max else DataCollatorWithPadding(tokenizer)
    batches: list[list[int]] = []
    padded: list[int] = []
    marks: dict[str, float] = {}

    def collator(features: list[dict[str, Any]]) -> dict[str, Any]:
        batches.append([int(sum(f["attention_mask"])) for f in features])
        batch = base_collator(features)
        padded.append(int(batch["input_ids"].numel()))
        return batch

    class Clock(TrainerCallback):
        def on_epoch_begin(self, _args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            marks.setdefault("start", time.perf_counter())

        def on_step_end(self, _args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step >= state.max_steps and torch.cuda.is_available() and not run.use_cpu:
                torch.cuda.synchronize()
            marks["end"] = time.perf_counter()

    def train(max_steps: int, model: Any, folder: str) -> None:
        steps = max_steps if max_steps > 0 else -(-len(dataset) // config.batch_size)
        arguments = _training_arguments(run, config, folder, max_steps, steps)
        trainer = Trainer(
            model=model, args=arguments, train_dataset=dataset, data_collator=collator, callbacks=[Clock()]
        )
        trainer.train()

    with tempfile.TemporaryDirectory() as tmp:
        train(warmup_steps, hf_classifier(encoder), tmp)
        batches.clear()
        padded.clear()
        marks.clear()
        model = hf_classifier(encoder)
        train(timed_steps, model, tmp)
    steps = len(batches) if timed_steps < 0 else timed_steps
    result = summary(marks["end"] - marks["start"], batches[:steps], padded[:steps], flop_model(model))
    result["precision"] = "bf16" if run.bf16 else "fp32"
    return result
