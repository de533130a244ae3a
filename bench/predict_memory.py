"""``bam predict`` on 10k vs 1M rows: peak memory stays flat, throughput does not fall.

``bam predict`` reads, tokenizes, answers and writes its input a chunk at a time
(``bam.inference.predict.CHUNK_ROWS`` rows), so a million-row file should cost what a ten-thousand
row one does. Each variant is one fresh process running the CLI itself
(``bam.cli.app.main(["predict", ...])``); its peak resident set size (``ru_maxrss``, imports of
torch and transformers included: what a user's process costs) and rows per second are reported.

* rows_10k -- the first 10,000 rows of the file below
* rows_1M  -- 1,000,000 synthetic pairs (4-16 words each, ``common.synthetic_texts``) in a TSV with
              GLUE's RTE header (index, sentence1, sentence2); ``--task all`` on a model with an
              rte and an stsb head, so every row gets both heads' answers

The model is a tiny random encoder (1 layer, hidden 32) on the packaged MiniLM-L6 vocabulary, so
the million rows take minutes and the figure measures bam's handling of rows, not the encoder.
Targets: peak RSS of 1M − 10k ≤ 200 MB; rows/s of 1M ≥ 0.9 × that of 10k. ``--check``: 5,000 vs
20,000 rows (seconds); ``--quick``: 10k vs 100k.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import alternate, final_json, machine, synthetic_texts, table, worker_main

SMALL, LARGE = 10_000, 1_000_000
MEMORY_TARGET_MB = 200.0
SPEED_TARGET = 0.9  # large-file rows/s over small-file rows/s
HEADS = ["rte", "stsb"]
WARM_ROWS = 100
ENCODER = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}


def _bam_predict(model: str, source: str, output: str) -> None:
    from bam.cli.app import main

    argv = ["predict", "--model", model, "--task", "all", "--input", source, "--output", output]
    code = main([*argv, "--batch-size", "128", "--quiet"])
    if code != 0:
        raise SystemExit(f"bam predict exited with {code}")


def predict_worker(args: dict[str, Any]) -> dict[str, Any]:
    # A first run on a few rows imports torch and transformers, so the timed one measures rows.
    _bam_predict(args["model"], args["warm"], args["output"])
    start = time.perf_counter()
    _bam_predict(args["model"], args["input"], args["output"])
    seconds = time.perf_counter() - start
    with open(args["output"], "rb") as handle:
        written = sum(1 for _ in handle)
    if written != args["rows"]:
        raise SystemExit(f"bam predict wrote {written} rows of {args['rows']}")
    return {"rows_per_second": args["rows"] / seconds, "seconds": seconds}


WORKERS = {"predict": predict_worker}


def _write_input(path: Path, rows: int, sizes: tuple[int, ...]) -> dict[int, Path]:
    """``rows`` synthetic pairs at ``path``, and files of their first ``sizes`` rows beside it."""
    first = synthetic_texts(rows, 1, 4, 16)
    second = synthetic_texts(rows, 2, 4, 16)
    paths = {rows: path, **{n: path.with_name(f"first-{n}.tsv") for n in sizes}}
    handles = {n: open(p, "w", encoding="utf-8") for n, p in paths.items()}  # noqa: SIM115
    try:
        for handle in handles.values():
            handle.write("index\tsentence1\tsentence2\n")
        for i, (a, b) in enumerate(zip(first, second, strict=True)):
            line = f"{i}\t{a}\t{b}\n"
            for n, handle in handles.items():
                if i < n:
                    handle.write(line)
    finally:
        for handle in handles.values():
            handle.close()
    return paths


def _save_model(folder: Path) -> str:
    import torch

    from bam.model import build_model, save_bam_model
    from bam.tasks import get_task

    torch.manual_seed(0)
    model, tokenizer = build_model(
        "minilm-l6", [get_task(t) for t in HEADS], random_init=True, overrides=dict(ENCODER), pooling="cls"
    )
    return str(save_bam_model(model, tokenizer, folder, {"train_config": {"max_length": 128}}))


def parent(ns: argparse.Namespace) -> None:
    check = bool(getattr(ns, "check", False))
    small, large = (5_000, 20_000) if check else (SMALL, 100_000) if ns.quick else (SMALL, LARGE)
    rounds = ns.rounds or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        big = folder / "rows.tsv"
        files = _write_input(big, large, (WARM_ROWS, small))
        model = _save_model(folder / "model")
        print(
            f"predict_memory: {machine()}; {rounds} round(s); {small:,} vs {large:,} rows "
            f"({big.stat().st_size / 1e6:.0f} MB TSV, written in {time.perf_counter() - started:.0f}s); "
            f"--task all, heads {', '.join(HEADS)}, tiny random encoder",
            flush=True,
        )
        variants = {
            name: {"worker": "predict", "model": model, "input": str(files[rows]), "rows": rows}
            | {"output": str(folder / f"{name}.jsonl"), "warm": str(files[WARM_ROWS])}
            for name, rows in (("small", small), ("large", large))
        }
        results = alternate(__file__, variants, rounds, extra_rounds=0)
    rows = [
        [
            f"{variants[name]['rows']:,} rows",
            max(r["peak_rss_mb"] for r in runs),
            min(r["rows_per_second"] for r in runs),
            " ".join(f"{r['seconds']:.0f}s" for r in runs),
            " ".join(f"{r['foreign_cpu']:.2f}" for r in runs),
        ]
        for name, runs in results.items()
    ]
    print(table(["input", "peak RSS MB", "rows/s", "time", "foreign cpu"], rows))
    growth = max(r["peak_rss_mb"] for r in results["large"]) - max(r["peak_rss_mb"] for r in results["small"])
    pairs = zip(results["large"], results["small"], strict=True)
    speed = [a["rows_per_second"] / b["rows_per_second"] for a, b in pairs]
    print(f"peak RSS growth {growth:+.0f} MB (target ≤ +{MEMORY_TARGET_MB:g} MB)")
    print(f"rows/s large/small {min(speed):.3f} (target ≥ {SPEED_TARGET:g})")
    final_json(
        "predict_memory",
        {
            "rows_small": small,
            "rows_large": large,
            "peak_rss_small_mb": max(r["peak_rss_mb"] for r in results["small"]),
            "peak_rss_large_mb": max(r["peak_rss_mb"] for r in results["large"]),
            "rss_growth_mb": growth,
            "speed_ratio_large_vs_small": min(speed),
            "meets_memory": growth <= MEMORY_TARGET_MB,
            "meets_speed": min(speed) >= SPEED_TARGET,
        },
    )


if __name__ == "__main__":
    worker_main(WORKERS, parent)
