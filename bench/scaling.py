"""Time per epoch as the number of tasks grows, the total number of rows staying the same.

The same 2,048 synthetic rows are split into 1, 2, 4 and 8 custom tasks (one head each) and
trained for two epochs with bam's real loop on a tiny randomly initialised encoder, so that what
grows with the task count — per-task heads, losses, row groups, sampling — is not hidden behind
encoder time. Per-epoch time = mean time per step after one warm-up step (epoch-end checkpoint and
the next epoch's plan included) × steps per epoch. Ideally flat: the ratio max/min is reported.
Steps are timed through the loop's ``on_step`` hook; dev evaluation is skipped through its
``evaluator`` hook. ``--check``: 128 rows into 1 and 2 tasks, one epoch, one round.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from common import (
    TINY,
    alternate,
    final_json,
    machine,
    median,
    synthetic_texts,
    table,
    worker_main,
    write_custom_task,
)
from loops import timed_bam_train

ROWS = 2048
BATCH = 32
TASK_COUNTS = (1, 2, 4, 8)


def epoch_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.config.train import TrainConfig
    from bam.data.batching import steps_per_epoch

    tasks = args["tasks"]
    config = TrainConfig(
        tasks=tasks,
        random_init=True,
        encoder_overrides=dict(TINY),
        batch_size=BATCH,
        epochs=args["epochs"],
        checkpoint_every=0,
        num_threads=2,
        log_with=[],
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = timed_bam_train(config, Path(tmp) / "run", Path(tmp) / "cache")
    per_epoch = steps_per_epoch([args["rows"] // len(tasks)] * len(tasks), BATCH)
    warmup = 1
    seconds, batches = log.window(warmup)
    return {
        "epoch_seconds": seconds / len(batches) * per_epoch,
        "steps_per_epoch": per_epoch,
        "timed_steps": len(batches),
    }


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or (1 if ns.quick else 3)
    epochs = 1 if ns.quick or ns.check else 2
    rows, counts = (128, (1, 2)) if ns.check else (ROWS, TASK_COUNTS)
    print(
        f"scaling: {machine()}; {rounds} round(s); {rows} rows split into {counts} tasks; "
        f"tiny encoder {TINY}; {epochs} epoch(s)",
        flush=True,
    )
    texts = synthetic_texts(rows, seed=1)
    labels = [i % 2 for i in range(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for k in counts:
            size = rows // k
            yamls = [
                str(
                    write_custom_task(
                        Path(tmp) / f"k{k}" / f"t{i}",
                        f"synth{k}x{i}",
                        texts[i * size : (i + 1) * size],
                        labels[i * size : (i + 1) * size],
                    )
                )
                for i in range(k)
            ]
            variants[f"{k}_tasks"] = {"worker": "epoch", "tasks": yamls, "epochs": epochs, "rows": rows}
        results = alternate(__file__, variants, rounds)
    medians = {name: median([r["epoch_seconds"] for r in runs]) for name, runs in results.items()}
    rows = [
        [
            name,
            medians[name],
            " ".join(f"{r['epoch_seconds']:.2f}" for r in runs),
            runs[0]["steps_per_epoch"],
            " ".join(f"{r['foreign_cpu']:.2f}" for r in runs),
        ]
        for name, runs in results.items()
    ]
    print(table(["tasks", "s/epoch", "per round", "steps/epoch", "foreign cpu"], rows))
    spread = max(medians.values()) / min(medians.values())
    print(f"max/min per-epoch time: {spread:.3f} (flat = 1.0)")
    final_json(
        "scaling",
        {"rounds": rounds, "epoch_seconds": medians, "max_over_min": spread},
    )


if __name__ == "__main__":
    worker_main({"epoch": epoch_worker}, parent)
