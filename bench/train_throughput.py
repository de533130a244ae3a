"""Training throughput: bam's loop vs ``transformers.Trainer`` at its best, on the same rows.

Same packaged MiniLM-L6 encoder, batch size 32, learning rate 5e-5 with 10% warm-up, AdamW with
weight decay 0.01, grad-norm clipping at 1.0, and the very same training examples: bam's loop
draws one epoch of a fixed mix of GLUE training rows (rte, mrpc, stsb, cola, sst2; the rows bam's
``train_cap`` keeps) with its task sampler, and the Trainer gets exactly that multiset of rows
(``bam.data.batching.epoch_plan``; both sides report a digest of the row lengths they trained),
each side batching them its own way. So every side does one epoch of identical examples (35
optimizer steps by default). Each side first runs a few warm-up steps in a separate short run in
the same process (not timed); then the one-epoch run is timed from its first step to the end of
its last (model loading and tokenization outside the window; bam through its ``on_step`` and
``evaluator`` hooks, the Trainer through a callback, ``bench/loops.py``). Variants, each in a
fresh process, alternating per round:

* bam           -- ``bam.train.loop.train`` as configured by default (``precision: auto``: bf16
                   autocast where the CPU has bf16 units; dropout masks from SFC64)
* bam_fp32      -- the same loop with ``precision: fp32``, for information
* trainer_fp32  -- Trainer with dynamic padding (DataCollatorWithPadding) and length grouping
                   (v5: ``train_sampling_strategy="group_by_length"``, v4's ``group_by_length``),
                   no evaluation, saving or logging, ``dataloader_num_workers=0``; one 2-way
                   classification head for all rows (the same encoder work)
* trainer_bf16  -- the same with ``bf16=True`` (autocast, fp32 master weights: its best on a CPU
                   with bf16 units)
* trainer_glue  -- Trainer as ``run_glue.py`` runs by default: ``padding="max_length"`` (128),
                   ``default_data_collator``, random sampling, fp32. Every batch is 32×128, so its
                   rate does not depend on which rows are in the window: it is timed over fewer steps.

Targets: bam ≥ 1.3× the faster of trainer_fp32 and trainer_bf16 in each round (its best
configuration), and ≥ 4× trainer_glue, in examples/s (median of per-round ratios).
``--check``: a tiny random encoder, 5 × 8 rows in batches of 8, one round.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from common import (
    alternate,
    encoder_settings,
    final_json,
    machine,
    median,
    paired_ratios,
    ratio_line,
    ratios_to_best,
    table,
    worker_main,
)
from loops import TrainerRun, bam_config, epochs_for_steps, timed_bam_train, timed_trainer

TASKS = ["rte", "mrpc", "stsb", "cola", "sst2"]
LR = 5e-5
WARMUP_FRACTION = 0.1
WARMUP_STEPS = 3
PEERS = ("trainer_fp32", "trainer_bf16")  # the Trainer's configurations; its best is the faster


def _config(args: dict[str, Any], epochs: float, precision: str = "auto") -> Any:
    return bam_config(
        encoder_settings(args["check"]),
        TASKS,
        args["per_task"],
        batch_size=args["batch"],
        learning_rate=LR,
        warmup_fraction=WARMUP_FRACTION,
        epochs=epochs,
        precision=precision,
    )


def bam_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.data.batching import steps_per_epoch

    per_epoch = steps_per_epoch([args["per_task"]] * len(TASKS), args["batch"])
    precision = args.get("precision", "auto")
    with tempfile.TemporaryDirectory() as tmp:
        warm = _config(args, epochs_for_steps(args["warmup"], per_epoch), precision)
        timed_bam_train(warm, Path(tmp) / "warm", Path(tmp) / "cache")
        log = timed_bam_train(_config(args, 1.0, precision), Path(tmp) / "run", Path(tmp) / "cache")
    assert len(log.starts) == per_epoch, (len(log.starts), per_epoch)
    result = log.summary()
    result["loop_reported_examples_per_second"] = log.loop_examples_per_second
    return result


def trainer_worker(args: dict[str, Any], run: TrainerRun) -> dict[str, Any]:
    steps = args["glue_steps"] if run.pad_to_max else -1
    return timed_trainer(run, _config(args, 1.0), encoder_settings(args["check"]), args["warmup"], steps)


WORKERS = {
    "bam": bam_worker,
    "trainer_fp32": lambda a: trainer_worker(a, TrainerRun()),
    "trainer_bf16": lambda a: trainer_worker(a, TrainerRun(bf16=True)),
    "trainer_glue": lambda a: trainer_worker(a, TrainerRun(group_by_length=False, pad_to_max=True)),
}


def _settings(ns: argparse.Namespace) -> dict[str, Any]:
    if ns.check:
        return {"check": True, "per_task": 8, "batch": 8, "warmup": 1, "glue_steps": 2}
    # 5 × 224 = 1120 rows = 35 full batches of 32 (quick: 5 × 64 = 10 batches).
    per_task, glue_steps = (64, 3) if ns.quick else (224, 10)
    return {
        "check": False,
        "per_task": per_task,
        "batch": 32,
        "warmup": WARMUP_STEPS,
        "glue_steps": glue_steps,
    }


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                runs[0]["precision"],
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
    headers = ["variant", "precision", "examples/s", "real tok/s", "mean len", "pad frac", "timed steps"]
    return table([*headers, "peak MB", "ex/s per round", "foreign cpu"], rows)


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or (1 if ns.quick else 3)
    args = _settings(ns)
    print(
        f"train_throughput: {machine()}; {rounds} round(s); one epoch of {len(TASKS)}×{args['per_task']} "
        f"GLUE rows ({', '.join(TASKS)}); batch {args['batch']}; {args['warmup']} warm-up steps untimed; "
        f"trainer_glue timed over {args['glue_steps']} steps"
        + ("; --check: tiny random encoder" if ns.check else ""),
        flush=True,
    )
    variants = {
        "bam": args,
        "bam_fp32": {**args, "worker": "bam", "precision": "fp32"},
        **{name: args for name in WORKERS if name != "bam"},
    }
    results = alternate(__file__, variants, rounds)
    print(_table(results))
    same_rows = all(
        r["lengths_digest"] == results["bam"][i]["lengths_digest"]
        for name in ("bam_fp32", *PEERS)
        for i, r in enumerate(results[name])
    )
    if not same_rows:
        print("warning: the sides trained different rows (length digests differ): unlike work compared")
    best, winners = ratios_to_best(results, "bam", PEERS, "examples_per_second")
    glue = paired_ratios(results, "bam", "trainer_glue", "examples_per_second")
    fp32_best, _ = ratios_to_best(results, "bam_fp32", PEERS, "examples_per_second")
    print(
        ratio_line("bam/Trainer best examples/s", best, 1.3)
        + f"; best Trainer per round: {' '.join(winners)}"
    )
    print(ratio_line("bam/trainer_glue examples/s", glue, 4.0))
    print(ratio_line("(info) bam_fp32/Trainer best examples/s", fp32_best, None))
    print(
        ratio_line(
            "(info) bam/bam_fp32 examples/s",
            paired_ratios(results, "bam", "bam_fp32", "examples_per_second"),
            None,
        )
    )
    print(
        ratio_line(
            "(info) trainer_bf16/trainer_fp32",
            paired_ratios(results, "trainer_bf16", "trainer_fp32", "examples_per_second"),
            None,
        )
    )
    loop_own = median([r["loop_reported_examples_per_second"] for r in results["bam"]])
    print(f"bam loop's own examples/s figure for the timed epoch: {loop_own:.1f}")

    def rate(name: str) -> float:
        return median([r["examples_per_second"] for r in results[name]])

    final_json(
        "train_throughput",
        {
            "rounds": rounds,
            "bam_precision": results["bam"][0]["precision"],
            "same_rows": same_rows,
            **{f"{name}_examples_per_second": rate(name) for name in results},
            "trainer_best_per_round": winners,
            "ratio_vs_trainer_best": median(best),
            "ratio_vs_trainer_glue": median(glue),
            "meets_1.3x_best": median(best) >= 1.3,
            "meets_4x_glue": median(glue) >= 4.0,
            "fp32_ratio_vs_trainer_best": median(fp32_best),
        },
    )
    if ns.check and not same_rows:
        raise SystemExit("train_throughput --check: the sides trained different rows")


if __name__ == "__main__":
    worker_main(WORKERS, parent)
