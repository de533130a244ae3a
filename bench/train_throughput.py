"""Training throughput: bam's loop vs ``transformers.Trainer`` on the same rows, model and settings.

Same packaged MiniLM-L6 encoder, batch size 32, learning rate 5e-5 with 10% warm-up, AdamW with
weight decay 0.01, grad-norm clipping at 1.0, and the very same training examples: bam's loop
draws one epoch of a fixed mix of GLUE training rows (rte, mrpc, stsb, cola, sst2; the rows bam's
``train_cap`` keeps) with its task sampler, and the Trainer gets exactly that multiset of rows
(``bam.data.batching.epoch_plan``), each side batching them its own way. So every side does one
epoch of identical examples (35 optimizer steps by default); the rows inside a shorter window would
differ between the sides and with them the mean length. Each side first runs a few warm-up
steps in a separate short run in the same process (not timed); then the one-epoch run is timed
from its first step to the end of its last (model loading and tokenization outside the window).
Variants, each in a fresh process, alternating per round:

* bam            -- ``bam.train.loop.train`` (multi-task heads, length-grouped mixed batches), as
                    configured by default: dropout masks from numpy's SFC64 (``bam.cpu.dropout``)
* bam_torch_dropout -- the same loop with torch's ``bernoulli_`` masks (``dropout_rng: torch``), the
                    masks the Trainer uses; for information, so the table shows both
* trainer_best   -- Trainer with dynamic padding (DataCollatorWithPadding) and length grouping
                    (v5: ``train_sampling_strategy="group_by_length"``, v4's ``group_by_length``),
                    no evaluation, saving or logging, ``dataloader_num_workers=0``; one 2-way
                    classification head for all rows (the same encoder work)
* trainer_glue   -- Trainer as ``run_glue.py`` runs by default: ``padding="max_length"`` (128),
                    ``default_data_collator``, random sampling. Every batch is 32×128, so its rate
                    does not depend on which rows are in the window: it is timed over fewer steps.

Targets: bam ≥ 1.3× trainer_best and ≥ 4× trainer_glue in examples/s (median of per-round ratios).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    alternate,
    epochs_for_steps,
    final_json,
    glue_mix,
    machine,
    median,
    paired_ratios,
    ratio_line,
    table,
    timed_bam_train,
    worker_main,
)

TASKS = ["rte", "mrpc", "stsb", "cola", "sst2"]
BATCH = 32
LR = 5e-5
WARMUP_FRACTION = 0.1
WARMUP_STEPS = 3


def _summary(seconds: float, batches: list[list[int]], widths: list[int]) -> dict[str, Any]:
    rows = sum(len(b) for b in batches)
    real = sum(sum(b) for b in batches)
    padded = sum(len(b) * w for b, w in zip(batches, widths, strict=True))
    return {
        "seconds": seconds,
        "steps": len(batches),
        "examples_per_second": rows / seconds,
        "real_tokens_per_second": real / seconds,
        "mean_length": real / rows,
        "pad_fraction": 1 - real / padded,
    }


def _bam_config(per_task: int, epochs: float, dropout_rng: str = "sfc64") -> Any:
    from bam.config.train import TrainConfig

    return TrainConfig(
        tasks=TASKS,
        model="minilm-l6",
        pooling="cls",  # the Trainer's BertForSequenceClassification reads the pooler: same work
        train_cap={t: per_task for t in TASKS},
        batch_size=BATCH,
        learning_rate=LR,
        warmup_fraction=WARMUP_FRACTION,
        epochs=epochs,
        dropout_rng=dropout_rng,
        checkpoint_every=0,
        num_threads=2,
        log_with=[],
    )


def bam_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.data.batching import steps_per_epoch

    per_epoch = steps_per_epoch([args["per_task"]] * len(TASKS), BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        rng = args.get("dropout_rng", "sfc64")
        warm = _bam_config(args["per_task"], epochs_for_steps(WARMUP_STEPS, per_epoch), rng)
        timed_bam_train(warm, Path(tmp) / "warm", Path(tmp) / "cache")
        log = timed_bam_train(_bam_config(args["per_task"], 1.0, rng), Path(tmp) / "run", Path(tmp) / "cache")
    assert len(log.starts) == per_epoch, (len(log.starts), per_epoch)
    seconds, batches = log.window(0)
    result = _summary(seconds, batches, [max(b) for b in batches])
    result["loop_reported_examples_per_second"] = log.loop_examples_per_second
    return result


def _bam_epoch_rows(per_task: int, tokenizer: Any) -> tuple[list[Any], list[tuple[int, int]]]:
    """The examples of each task and the (task, row) pairs of bam's first epoch, in plan order."""
    from bam.data.batching import epoch_plan
    from bam.data.features import tokenize

    defaults = _bam_config(per_task, 1.0)
    examples = glue_mix(TASKS, per_task)
    lengths = [tokenize(e, tokenizer, defaults.max_length).lengths for e in examples]
    plan = epoch_plan(lengths, BATCH, defaults.sampling_alpha, defaults.seed, 0)
    pairs = [(int(t), int(r)) for batch in plan for t, r in zip(batch.task_ids, batch.rows, strict=True)]
    return examples, pairs


def trainer_worker(args: dict[str, Any], glue_default: bool) -> dict[str, Any]:
    import datasets
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    from bam.model import resolve_encoder_path
    from bam.tasks import get_task

    path = resolve_encoder_path("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples, pairs = _bam_epoch_rows(args["per_task"], tokenizer)
    encoded, labels = [], []
    for item in examples:
        padding = "max_length" if glue_default else False
        encoded.append(tokenizer(*item.texts, truncation=True, max_length=128, padding=padding))
        values = np.asarray(item.labels)
        if get_task(item.task).kind == "regression":  # one 2-way head for all rows
            values = (values >= 2.5).astype(np.int64)
        labels.append([int(x) for x in values])
    columns = {
        key: [encoded[t][key][r] for t, r in pairs]
        for key in ("input_ids", "token_type_ids", "attention_mask")
    }
    columns["labels"] = [labels[t][r] for t, r in pairs]
    dataset = datasets.Dataset.from_dict(columns)

    batches: list[list[int]] = []
    widths: list[int] = []
    base_collator = default_data_collator if glue_default else DataCollatorWithPadding(tokenizer)

    def collator(features: list[dict[str, Any]]) -> dict[str, Any]:
        batches.append([int(sum(f["attention_mask"])) for f in features])
        batch = base_collator(features)
        widths.append(int(batch["input_ids"].shape[1]))
        return batch

    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_epoch_begin(self, _args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            marks.setdefault("start", time.perf_counter())

        def on_step_end(self, _args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            marks["end"] = time.perf_counter()

    def run(max_steps: int, model: Any, folder: str) -> Trainer:
        steps = max_steps if max_steps > 0 else -(-len(dataset) // BATCH)
        training_args = TrainingArguments(
            output_dir=folder,
            per_device_train_batch_size=BATCH,
            learning_rate=LR,
            weight_decay=0.01,
            max_grad_norm=1.0,
            num_train_epochs=1,
            max_steps=max_steps,
            warmup_steps=round(steps * WARMUP_FRACTION),
            lr_scheduler_type="linear",
            train_sampling_strategy="random" if glue_default else "group_by_length",
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            use_cpu=True,
            seed=13,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=collator,
            callbacks=[Clock()],
        )
        trainer.train()
        return trainer

    with tempfile.TemporaryDirectory() as tmp:
        run(WARMUP_STEPS, AutoModelForSequenceClassification.from_pretrained(path, num_labels=2), tmp)
        batches.clear()
        widths.clear()
        marks.clear()
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        run(args["glue_steps"] if glue_default else -1, model, tmp)
    steps = len(batches) if not glue_default else args["glue_steps"]
    return _summary(marks["end"] - marks["start"], batches[:steps], widths[:steps])


WORKERS = {
    "bam": bam_worker,
    "trainer_best": lambda a: trainer_worker(a, glue_default=False),
    "trainer_glue": lambda a: trainer_worker(a, glue_default=True),
}


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or (1 if ns.quick else 3)
    # 5 × 224 = 1120 rows = 35 full batches of 32 (quick: 5 × 64 = 10 batches).
    args = {"per_task": 64 if ns.quick else 224, "glue_steps": 3 if ns.quick else 10}
    print(
        f"train_throughput: {machine()}; {rounds} round(s); one epoch of {len(TASKS)}×{args['per_task']} "
        f"GLUE rows ({', '.join(TASKS)}); batch {BATCH}; {WARMUP_STEPS} warm-up steps untimed; "
        f"trainer_glue timed over {args['glue_steps']} steps",
        flush=True,
    )
    variants = {name: args for name in WORKERS}
    variants = {
        "bam": args,
        "bam_torch_dropout": {**args, "worker": "bam", "dropout_rng": "torch"},
        **variants,
    }
    results = alternate(__file__, variants, rounds)
    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                median([r["examples_per_second"] for r in runs]),
                median([r["real_tokens_per_second"] for r in runs]),
                runs[0]["mean_length"],
                median([r["pad_fraction"] for r in runs]),
                runs[0]["steps"],
                median([r["peak_rss_mb"] for r in runs]),
                " ".join(f"{r['examples_per_second']:.1f}" for r in runs),
                " ".join(f"{r['foreign_cpu']:.2f}" for r in runs),
            ]
        )
    print(
        table(
            [
                "variant",
                "examples/s",
                "real tok/s",
                "mean len",
                "pad frac",
                "timed steps",
                "peak MB",
                "ex/s per round",
                "foreign cpu",
            ],
            rows,
        )
    )
    best = paired_ratios(results, "bam", "trainer_best", "examples_per_second")
    glue = paired_ratios(results, "bam", "trainer_glue", "examples_per_second")
    print(ratio_line("bam/trainer_best examples/s", best, 1.3))
    print(ratio_line("bam/trainer_glue examples/s", glue, 4.0))
    torch_best = paired_ratios(results, "bam_torch_dropout", "trainer_best", "examples_per_second")
    torch_glue = paired_ratios(results, "bam_torch_dropout", "trainer_glue", "examples_per_second")
    print(ratio_line("bam_torch_dropout/trainer_best examples/s", torch_best, None))
    print(ratio_line("bam_torch_dropout/trainer_glue examples/s", torch_glue, None))
    loop_own = median([r["loop_reported_examples_per_second"] for r in results["bam"]])
    print(f"bam loop's own examples/s figure for the timed epoch: {loop_own:.1f}")

    def rate(name: str) -> float:
        return median([r["examples_per_second"] for r in results[name]])

    final_json(
        "train_throughput",
        {
            "rounds": rounds,
            "bam_examples_per_second": rate("bam"),
            "trainer_best_examples_per_second": rate("trainer_best"),
            "trainer_glue_examples_per_second": rate("trainer_glue"),
            "ratio_vs_trainer_best": median(best),
            "ratio_vs_trainer_glue": median(glue),
            "meets_1.3x_best": median(best) >= 1.3,
            "meets_4x_glue": median(glue) >= 4.0,
            "torch_dropout_ratio_vs_trainer_best": median(torch_best),
            "torch_dropout_ratio_vs_trainer_glue": median(torch_glue),
        },
    )


if __name__ == "__main__":
    worker_main(WORKERS, parent)
