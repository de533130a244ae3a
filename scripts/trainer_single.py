"""Fine-tune one task with a plain ``transformers.Trainer`` on bam's teacher recipe, scored by bam.

Issue #30: bam's Single (its teachers) should be within seed noise of a plain ``Trainer``
fine-tune with the same recipe. This is that fine-tune, one task and seed at a time, so the two
can be compared seed by seed. The recipe is the teacher config ``bam run --preset P`` builds for
the task and seed (``RunConfig.teacher_config``): learning rate, batch, epochs, warm-up, weight
decay, clipping, AdamW's eps, dropout, max_length, ``train_cap``, ``both_orders``, and precision
as ``auto`` resolves it here (bf16 → ``bf16=True``). The rows are bam's (``training_rows``,
tokenized by bam), the dev rows and scorer too (the primary metric on the first dev split, in
percent). The model is ``AutoModelForSequenceClassification`` on the preset's encoder.

    python scripts/trainer_single.py --task cola --seed 1 --output runs/trainer-single/cola-s1
    python scripts/trainer_single.py --task rte --seed 1 --output DIR --match-bam   # all flags below
    python scripts/trainer_single.py --check --task rte --output DIR                # seconds, for CI

``key=value`` arguments change the recipe as they would ``bam run`` (``precision=fp32``).

As in bam: the steps (epochs of ceil(rows / batch) steps, as ``max_steps``), the linear warm-up
(round(steps × warmup_fraction)) and decay, AdamW (eps 1e-6, no decay on biases and norms), dev
evaluations at bam's steps (each epoch's end, or ``eval_every``) and, since bam's teachers keep
their best checkpoint (``keep_best``), the best evaluation's score: the model that
``load_best_model_at_end`` would load, whose score is known without writing checkpoints. With
``keep_best: false``, the last evaluation's.

What a plain Trainer does otherwise (result.json's "differences" lists those that applied):

- batches: bam groups rows of similar length (sorted inside chunks of 50 batches, batches then
  shuffled); the Trainer's random sampler mixes lengths. ``--group-by-length``: the Trainer's
  length grouping (megabatches of 50 batches sorted by length): close, not the same order;
- head: with ``pooling: auto`` bam's MiniLM heads read the mean of the token states (dropout +
  linear); BERT's classifier reads its pooler (dense + tanh on [CLS]). ``--bam-model``: the
  Trainer trains bam's own ``BamModel`` (its pooling and head), seeded as bam seeds it: the same
  starting weights as bam's teacher of that seed;
- layer-wise learning-rate decay (bam: lr · 0.9^depth): one rate in the Trainer.
  ``--layerwise-decay``: bam's rates per layer, through the Trainer's ``optimizers`` argument;
- random streams: the same seed number, other draws (data order; dropout masks: bam's SFC64 on
  CPU, torch's ``bernoulli_`` here, the same distribution). Seeds pair runs, not draws.

``--match-bam`` sets all three flags. Refused: ``ema_decay``, ``init_model``, teacher outputs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bam.config.run import load_run_config
from bam.config.train import TrainConfig, config_to_dict
from bam.errors import BamError
from bam.tasks import get_task
from bam.tasks.spec import TaskSpec

# The benchmarks' Trainer helpers (bench/loops.py, common.py), imported where used: a bad argument
# is refused before torch is imported.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

CHECK_ROWS, CHECK_DEV_ROWS = 48, 64  # --check: a few dozen rows, a few steps
RECIPE_KEYS = ("learning_rate", "batch_size", "epochs", "warmup_fraction", "weight_decay", "max_grad_norm")
RECIPE_KEYS += ("dropout", "max_length", "keep_best", "gradient_accumulation_steps")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="glue5-cpu", help="bam preset whose teacher recipe is used")
    parser.add_argument("--task", required=True, help="a task of the preset (cola, sst2, mrpc, stsb, rte)")
    parser.add_argument("--seed", type=int, help="run seed (default: the preset's first)")
    parser.add_argument("--output", required=True, type=Path, help="folder for result.json")
    parser.add_argument("--group-by-length", action="store_true", help="Trainer's length-grouped batches")
    parser.add_argument("--bam-model", action="store_true", help="train bam's BamModel (pooling, head)")
    parser.add_argument("--layerwise-decay", action="store_true", help="bam's layer-wise learning rates")
    parser.add_argument("--match-bam", action="store_true", help="all three flags above")
    parser.add_argument("--check", action="store_true", help="tiny random encoder, few rows/steps (CI)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe changes, as bam run")
    args = parser.parse_args(argv)
    if args.match_bam:
        args.group_by_length = args.bam_model = args.layerwise_decay = True
    return args


def teacher_recipe(args: argparse.Namespace) -> tuple[TrainConfig, TaskSpec]:
    """The teacher config ``bam run`` trains for the task and seed (``--check``: made tiny)."""
    task = get_task(args.task)
    run = load_run_config(args.preset, None, list(args.overrides))
    names = [get_task(name).name for name in run.tasks]
    if task.name not in names:
        raise BamError(f"task {task.name} is not in preset {args.preset} (tasks: {', '.join(names)})")
    seed = run.seeds[0] if args.seed is None else args.seed
    config = run.teacher_config(run.tasks[names.index(task.name)], seed)
    if args.check:
        from common import encoder_settings

        tiny = {**encoder_settings(True), "max_length": 64, "batch_size": 8, "epochs": 2.0}
        config = replace(config, **tiny, train_cap={**config.train_cap, task.name: CHECK_ROWS})
    unsupported = {"ema_decay": config.ema_decay, "init_model": config.init_model}
    unsupported["teacher_outputs"] = config.teacher_outputs or config.lambda_schedule != "gold"
    unsupported["gradient_accumulation_steps"] = config.batch_size % config.gradient_accumulation_steps
    for key, value in unsupported.items():
        if value:
            raise BamError(f"{key}: not supported by this comparison (a plain Trainer of gold labels)")
    return config, task


def differences(config: TrainConfig, pooling: str, args: argparse.Namespace) -> list[str]:
    """How this run's training differs from bam's teacher of the same config, as it ran."""
    draws = f"torch's bernoulli_, bam: dropout_rng {config.dropout_rng}"
    rules = [
        (True, f"random streams: the same seed number, other draws (row order; dropout masks: {draws})"),
        (args.group_by_length, "batches: the Trainer's length grouping (megabatches of 50 batches, longest "
         "first), bam's chunks of 50 batches sorted by length, then shuffled: similar, not the same"),
        (not args.group_by_length, "batches: random rows of mixed lengths, bam: rows of similar length "
         "(--group-by-length)"),
        (not args.bam_model and pooling != "cls", "head: BERT's pooler on [CLS] (dense + tanh), dropout, "
         f"linear; bam: {pooling} pooling, dropout, linear (--bam-model)"),
        (not args.layerwise_decay and config.layerwise_decay != 1.0, "learning rate: one for all layers, "
         f"bam: layer-wise decay {config.layerwise_decay} (--layerwise-decay)"),
    ]  # fmt: skip
    return [text for applies, text in rules if applies]


class Rows:
    """Tokenized rows (bam's features) as the dicts ``DataCollatorWithPadding`` pads."""

    def __init__(self, features: Any, labels: np.ndarray, regression: bool) -> None:
        self.features, self.labels, self.regression = features, labels, regression

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids, types = self.features.row(i)
        label = float(self.labels[i]) if self.regression else int(self.labels[i])
        row = {"input_ids": ids.tolist(), "token_type_ids": types.tolist(), "attention_mask": [1] * len(ids)}
        return {**row, "labels": label}


def bam_model_for_trainer(config: TrainConfig, task: TaskSpec) -> Any:
    """bam's own model (encoder, pooling, head as bam builds them), with the loss bam computes."""
    import torch
    import torch.nn.functional as F
    from transformers.modeling_outputs import SequenceClassifierOutput

    from bam.model import build_model

    settings = {
        key: getattr(config, key) for key in ("random_init", "trust_remote_code", "dropout", "pooling")
    }
    model, _ = build_model(
        config.model, [task], overrides=config.encoder_overrides, attention=config.attention, **settings
    )

    class BamForTrainer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bam = model

        def forward(
            self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None, labels: Any = None
        ) -> Any:
            out = self.bam(input_ids, attention_mask, token_type_ids)[task.name]
            loss = None
            if labels is not None:  # in fp32, as bam.train.batch_loss
                fp32 = out.float()
                regression = task.kind == "regression"
                loss = F.mse_loss(fp32, labels.float()) if regression else F.cross_entropy(fp32, labels)
            return SequenceClassifierOutput(loss=loss, logits=out)

    return BamForTrainer()


def layerwise_optimizer(model: Any, config: TrainConfig) -> Any:
    """AdamW with bam's parameter groups (bam.train.optim): lr · decay^(depth from the top), heads
    at the full rate, no weight decay on 1-D parameters; the Trainer adds its schedule."""
    import torch

    from bam.train.optim import layerwise_multipliers, parameter_depth

    if hasattr(model, "bam"):  # bam's own model: bam's multipliers, by name
        own = layerwise_multipliers(model.bam, config.layerwise_decay)
        multipliers = {f"bam.{name}": value for name, value in own.items()}
    else:  # a Hugging Face classifier: what lies outside the encoder is the head
        n, prefix = int(model.config.num_hidden_layers), f"{model.base_model_prefix}."
        multipliers = {
            name: config.layerwise_decay
            ** (n + 2 - parameter_depth(name if name.startswith(prefix) else f"heads.{name}", n))
            for name, _ in model.named_parameters()
        }
    groups: dict[tuple[float, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((multipliers[name], param.ndim > 1), []).append(param)
    params = [
        {"params": ps, "lr": config.learning_rate * mult, "weight_decay": config.weight_decay * decays}
        for (mult, decays), ps in sorted(groups.items(), key=lambda kv: kv[0])
    ]
    return torch.optim.AdamW(params, lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-6)


def load_rows(config: TrainConfig, task: TaskSpec, check: bool) -> tuple[Any, Rows, Rows]:
    """The tokenizer, bam's training rows (cap, both orders; tokenized as bam does) and the first
    dev split's rows (``--check``: its first rows only)."""
    from transformers import AutoTokenizer

    from bam.data.features import load_or_tokenize
    from bam.data.prepare import training_rows
    from bam.inference.evaluate import load_eval_splits
    from bam.model import resolve_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path(config.model))
    rows = training_rows(task, config)
    assert rows.labels is not None
    regression = task.kind == "regression"
    train = Rows(load_or_tokenize(rows, tokenizer, config.max_length), rows.labels, regression)
    splits = load_eval_splits([task], config.data_dir, tokenizer, config.max_length)
    dev = next(split for split in splits if split.split == task.dev_splits[0])
    keep = np.arange(min(CHECK_DEV_ROWS, len(dev.labels)) if check else len(dev.labels))
    return tokenizer, train, Rows(dev.features.take(keep), dev.labels[keep], regression)


def training_arguments(config: TrainConfig, total: int, precision: str, folder: str, grouped: bool) -> Any:
    """bam's teacher recipe as ``TrainingArguments``: no evaluation strategy (a callback evaluates at
    bam's steps), no checkpoints, no logging."""
    from transformers import TrainingArguments

    from bam.model import default_device
    from loops import QUIET_TRAINER, length_grouping

    cpu = default_device().type == "cpu"
    accumulation = config.gradient_accumulation_steps
    return TrainingArguments(
        output_dir=folder,
        per_device_train_batch_size=config.batch_size // accumulation,
        gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        adam_epsilon=1e-6,  # bam.train.optim's AdamW
        max_grad_norm=config.max_grad_norm,
        max_steps=total,
        lr_scheduler_type="linear",
        warmup_steps=round(total * config.warmup_fraction),  # bam.train.optim.build_scheduler
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **QUIET_TRAINER,
        dataloader_pin_memory=not cpu,
        use_cpu=cpu,
        seed=config.seed,
        **length_grouping(grouped),
    )


def dev_scorer(task: TaskSpec, labels: np.ndarray) -> Any:
    """``compute_metrics`` for the Trainer: bam's score (primary metric, first dev split, percent)."""
    from bam.inference.forward import outputs_to_predictions
    from bam.tasks.metrics import compute_metrics, primary_score

    def score(prediction: Any) -> dict[str, float]:
        outputs = np.asarray(prediction.predictions, dtype=np.float32).reshape(len(labels), -1)
        predicted = outputs[:, 0] if task.kind == "regression" else outputs_to_predictions(outputs, task.kind)
        return {"score": primary_score(task, {task.dev_splits[0]: compute_metrics(task, predicted, labels)})}

    return score


def bam_steps_callback(eval_every: int, total: int, per_epoch: int, history: list[dict[str, Any]]) -> Any:
    """A callback that evaluates where bam's loop does (every ``eval_every`` steps and after the
    last one) and appends each evaluation to ``history``."""
    from transformers import TrainerCallback

    class AtBamSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step % eval_every == 0 or state.global_step == total:
                control.should_evaluate = True
            return control

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
            step, score = state.global_step, metrics["eval_score"]
            history.append({"step": step, "epoch": step / per_epoch, "score": score})
            print(f"step {step}/{total} dev score {score:.2f}", flush=True)

    return AtBamSteps()


def train_and_score(args: argparse.Namespace, config: TrainConfig, task: TaskSpec) -> dict[str, Any]:
    """Train with ``Trainer`` on bam's rows and recipe; dev scores at bam's evaluation steps."""
    import tempfile

    import torch
    import transformers
    from transformers import DataCollatorWithPadding, Trainer

    from bam.data.batching import steps_per_epoch
    from bam.model import default_device, resolve_pooling
    from bam.precision import resolve_precision
    from loops import hf_classifier

    started = time.perf_counter()
    precision = resolve_precision(config.precision, default_device())
    transformers.set_seed(config.seed)  # as bam seeds torch before building its model
    if args.bam_model:
        model = bam_model_for_trainer(config, task)
    else:
        encoder = {key: getattr(config, key) for key in ("model", "random_init", "encoder_overrides")}
        dropout = {"hidden_dropout_prob": config.dropout, "classifier_dropout": config.dropout}
        model = hf_classifier(encoder, task.num_outputs, **dropout)  # encoder_overrides win, as in bam
    tokenizer, train, dev = load_rows(config, task, args.check)
    per_epoch = steps_per_epoch([len(train)], config.batch_size)
    total = max(1, math.ceil(config.epochs * per_epoch))  # bam.train.setup's step count
    eval_every = config.eval_every or per_epoch
    history: list[dict[str, Any]] = []
    plan = f"{len(train)} rows, {total} steps ({per_epoch} per epoch), {precision.name} ({precision.reason})"
    print(f"{task.name} seed {config.seed}: {plan}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        arguments = training_arguments(config, total, precision.name, folder, args.group_by_length)
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=train,
            eval_dataset=dev,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=dev_scorer(task, dev.labels),
            callbacks=[bam_steps_callback(eval_every, total, per_epoch, history)],
            optimizers=(layerwise_optimizer(model, config) if args.layerwise_decay else None, None),
        )
        trainer.remove_callback(transformers.PrinterCallback)  # its dicts repeat the lines printed here
        trained = trainer.train()
    # bam keeps the first evaluation with the highest score (keep_best), else the last one.
    kept = max(history, key=lambda entry: entry["score"]) if config.keep_best else history[-1]
    pooling = resolve_pooling(config.model, config.pooling)
    recipe = {key: getattr(config, key) for key in RECIPE_KEYS}
    recipe.update(
        steps=total,
        steps_per_epoch=per_epoch,
        warmup_steps=arguments.warmup_steps,
        adam_epsilon=arguments.adam_epsilon,
        train_rows=len(train),
        train_cap=config.train_cap.get(task.name),
        both_orders=task.name in config.both_orders,
        dev_rows=len(dev),
        eval_every=eval_every,
        group_by_length=args.group_by_length,
        layerwise_decay=config.layerwise_decay if args.layerwise_decay else 1.0,
        model="bam.model.BamModel" if args.bam_model else type(model).__name__,
        pooling=pooling if args.bam_model else "the model's own head",
    )
    return {
        "task": task.name,
        "seed": config.seed,
        "preset": args.preset,
        "metric": task.primary_metric,
        "score": kept["score"],
        "kept_step": kept["step"],
        "score_last": history[-1]["score"],
        "dev_history": history,
        "recipe": recipe,
        "differences": differences(config, pooling, args),
        "bam_teacher_config": config_to_dict(config),
        "training_arguments": arguments.to_dict(),
        "seconds": time.perf_counter() - started,
        "train_seconds": trained.metrics.get("train_runtime"),
        "precision": precision.name,
        "precision_reason": precision.reason,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "check": args.check,
        "command": sys.argv,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config, task = teacher_recipe(args)
        result = train_and_score(args, config, task)
    except BamError as err:
        print(f"trainer_single: error: {err}", file=sys.stderr)
        return 2
    from bam.fileio import atomic_write_json

    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output / "result.json", result)
    kept = f"{result['metric']} {result['score']:.2f} (step {result['kept_step']}), {result['seconds']:.0f} s"
    print(f"{task.name} seed {config.seed}: {kept} → {args.output / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
