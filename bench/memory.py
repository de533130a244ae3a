"""Peak memory: student training on MiniLM-L6, and preparing a large task vs a small one.

Each figure is the peak resident set size (``ru_maxrss``) of a fresh worker process that does one
thing, so imports (torch, transformers) are included: that is what a user's process costs.

* student   -- ``bam.train.loop.train`` as a BAM student: MiniLM-L6, two tasks (rte, mrpc; 256 rows
               each) with recorded teacher outputs and teacher annealing, a few steps, the final dev
               evaluation and model save included. Target ≤ 2.5 GB.
* prepare_N -- read a synthetic custom task of N rows (TSV + task YAML written beforehand by the
               parent) with ``training_examples`` and tokenize it into an empty cache with
               ``load_or_tokenize``. The 400,000-row peak minus the 4,000-row peak must be < 500 MB.
* cached_N  -- the same once the cache exists (memory-mapped read back), for information.

The student runs in ``precision: auto`` (bf16 autocast where the CPU has bf16 units), as a
user's run does. ``--check``: a tiny random student (32 rows a task, 2 steps) and 40 vs 400 rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    alternate,
    encoder_settings,
    final_json,
    machine,
    median,
    peak_rss_mb,
    synthetic_texts,
    table,
    worker_main,
    write_custom_task,
)

STUDENT_TASKS = ["rte", "mrpc"]
STUDENT_ROWS = 256
SMALL, LARGE = 4_000, 400_000
CHECK_ROWS = {"student": 32, "small": 40, "large": 400}


def student_worker(args: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from bam.config.train import TrainConfig
    from bam.data.prepare import training_examples
    from bam.distill import save_teacher_outputs
    from bam.tasks import get_task
    from bam.train.loop import train

    baseline = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        teacher_outputs = {}
        rng = np.random.default_rng(0)
        for name in STUDENT_TASKS:
            task = get_task(name)
            examples = training_examples(task, None, args["rows"])
            path = Path(tmp) / f"{name}.teacher.safetensors"
            save_teacher_outputs(
                path,
                rng.normal(size=(len(examples), task.num_outputs)).astype(np.float32),
                task=name,
                split="train",
                examples_fingerprint=examples.fingerprint(),
                teacher_hash="bench",
                tokenizer="minilm-l6",
                max_length=128,
                kind=task.kind,
            )
            teacher_outputs[name] = [str(path)]
        config = TrainConfig(
            tasks=STUDENT_TASKS,
            **encoder_settings(args["check"]),
            train_cap=dict.fromkeys(STUDENT_TASKS, args["rows"]),
            teacher_outputs=teacher_outputs,
            lambda_schedule="linear",
            epochs=args["steps"] / (2 * args["rows"] / 32),
            num_threads=2,
        )
        start = time.perf_counter()
        train(config, Path(tmp) / "run", quiet=True, cache_dir=Path(tmp) / "cache")
        seconds = time.perf_counter() - start
    return {"peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": baseline, "seconds": seconds}


def prepare_worker(args: dict[str, Any]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from bam.data.features import load_or_tokenize
    from bam.data.prepare import training_examples
    from bam.model import resolve_encoder_path
    from bam.tasks import get_task

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm-l6"))
    baseline = peak_rss_mb()
    start = time.perf_counter()
    examples = training_examples(get_task(args["yaml"]), None)
    features = load_or_tokenize(examples, tokenizer, 128, args["cache"])
    seconds = time.perf_counter() - start
    assert len(features) == args["rows"], (len(features), args["rows"])
    return {"peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": baseline, "seconds": seconds}


def _write_task(folder: Path, rows: int) -> Path:
    texts = synthetic_texts(rows, seed=rows)
    labels = [i % 2 for i in range(rows)]
    return write_custom_task(folder, f"synthetic{rows}", texts, labels)


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or 1
    steps = 2 if ns.check else 4 if ns.quick else 8
    small, large = (CHECK_ROWS["small"], CHECK_ROWS["large"]) if ns.check else (SMALL, LARGE)
    student = {"steps": steps, "check": ns.check, "rows": CHECK_ROWS["student"] if ns.check else STUDENT_ROWS}
    print(
        f"memory: {machine()}; {rounds} round(s); student {steps} steps"
        f"{' (tiny random encoder)' if ns.check else ''}; prepare {small:,} vs {large:,} rows",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tasks = {rows: str(_write_task(root / f"task{rows}", rows)) for rows in (small, large)}
        for r in range(rounds):
            variants: dict[str, dict[str, Any]] = {"student": student}
            for prefix in ("prepare", "cached"):  # cold cache first, then the same cache read back
                for rows, yaml_path in tasks.items():
                    cache = str(root / f"cache{rows}-{r}")
                    variants[f"{prefix}_{rows}"] = {
                        "worker": "prepare",
                        "yaml": yaml_path,
                        "rows": rows,
                        "cache": cache,
                    }
            for name, runs in alternate(__file__, variants, 1, extra_rounds=0).items():
                results.setdefault(name, []).extend(runs)
    rows_out = [
        [
            name,
            median([r["peak_rss_mb"] for r in runs]),
            median([r["rss_after_imports_mb"] for r in runs]),
            median([r["seconds"] for r in runs]),
        ]
        for name, runs in results.items()
    ]
    print(table(["worker", "peak RSS MB", "RSS after imports MB", "seconds"], rows_out))

    def growth(prefix: str) -> float:
        few, many = results[f"{prefix}_{small}"], results[f"{prefix}_{large}"]
        return median([b["peak_rss_mb"] - a["peak_rss_mb"] for a, b in zip(few, many, strict=True)])

    peak = median([r["peak_rss_mb"] for r in results["student"]])
    print(f"student peak: {peak:.0f} MB (target ≤ 2500)")
    print(
        f"prepare {large:,} − {small:,} rows: {growth('prepare'):+.0f} MB (target < 500); "
        f"read back from the cache: {growth('cached'):+.0f} MB"
    )
    final_json(
        "memory",
        {
            "student_peak_mb": peak,
            "prepare_growth_mb": growth("prepare"),
            "cached_growth_mb": growth("cached"),
            "meets_student_2500mb": peak <= 2500,
            "meets_prepare_500mb": growth("prepare") < 500,
        },
    )


if __name__ == "__main__":
    worker_main({"student": student_worker, "prepare": prepare_worker}, parent)
