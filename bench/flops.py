"""Achieved training FLOP rate of bam's loop, as a share of this machine's bf16 and fp32 matmul peaks.

FLOPs of a step = 3 × forward, forward = 2 × (transformer-layer parameters) × real (non-pad)
tokens + 2 × (pooler + head parameters) × sequences + per layer 4·L²·d attention FLOPs for each
sequence of real length L. Padding is work the model does but not work that counts: it shows up
as a lower rate. The peaks are the best FLOP/s of large square ``torch.mm`` products (2048–4096)
in fp32 and in bf16, both measured in the same process just before and after the training steps
(the higher of the two kept), with the same 2 threads. Data: the packaged MiniLM-L6 on RTE + MRPC
training rows (mean length ≈ 60). Variants, each in a fresh process, alternating per round:

* bam               -- bam's loop as configured by default: ``precision: auto`` (bf16 autocast where
                       the CPU has bf16 units), dropout masks from numpy's SFC64 (``bam.cpu.dropout``)
* bam_fp32          -- the same with ``precision: fp32``, against the fp32 peak, for information
* bam_torch_dropout -- ``precision: auto`` with torch's ``bernoulli_`` masks (``dropout_rng: torch``),
                       for information: what the faster masks are worth

Target: bam ≥ 50% of the bf16 peak (median over rounds). ``--check``: a tiny random encoder,
batches of 8, 1 + 2 steps, small matrices for the peaks, one round.
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
    matmul_peaks,
    max_peaks,
    median,
    table,
    worker_main,
)
from loops import bam_config, epochs_for_steps, timed_bam_train

TASKS = ["rte", "mrpc"]
TARGET = 0.5  # of the bf16 peak


def bam_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.data.batching import steps_per_epoch

    peaks_before = matmul_peaks()
    total = args["warmup"] + args["steps"]
    per_epoch = steps_per_epoch([args["per_task"]] * len(TASKS), args["batch"])
    config = bam_config(
        encoder_settings(args["check"]),
        TASKS,
        args["per_task"],
        pooling="auto",  # as a user's run: MiniLM-L6 mean-pools
        batch_size=args["batch"],
        epochs=epochs_for_steps(total, per_epoch),
        dropout_rng=args.get("dropout_rng", "sfc64"),
        precision=args.get("precision", "auto"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = timed_bam_train(config, Path(tmp) / "run", Path(tmp) / "cache")
    peaks = max_peaks(peaks_before, matmul_peaks())
    assert len(log.starts) == total, (len(log.starts), total)
    done = log.summary(args["warmup"])
    return {
        "achieved_flops": done["flops"],
        "padded_flops": done["padded_flops"],
        "peak_fp32_flops": peaks["fp32"],
        "peak_bf16_flops": peaks["bf16"],
        "share_of_bf16_peak": done["flops"] / peaks["bf16"],
        "share_of_fp32_peak": done["flops"] / peaks["fp32"],
        "precision": log.precision,
        "mean_length": done["mean_length"],
        "seconds": done["seconds"],
        "steps": done["steps"],
    }


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    rows = [
        [
            name,
            r["precision"],
            i + 1,
            r["achieved_flops"] / 1e9,
            r["padded_flops"] / 1e9,
            r["peak_fp32_flops"] / 1e9,
            r["peak_bf16_flops"] / 1e9,
            100 * r["share_of_fp32_peak"],
            100 * r["share_of_bf16_peak"],
            r["mean_length"],
            r["foreign_cpu"],
        ]
        for name, runs in results.items()
        for i, r in enumerate(runs)
    ]
    headers = ["variant", "precision", "kept round", "GFLOP/s real", "GFLOP/s incl. pad"]
    headers += ["fp32 peak", "bf16 peak", "% fp32 peak", "% bf16 peak", "mean len", "foreign cpu"]
    return table(headers, rows)


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or (1 if ns.quick else 3)
    if ns.check:
        args = {"check": True, "per_task": 16, "batch": 8, "warmup": 1, "steps": 2}
    else:  # 448 rows = 14 batches of 32
        args = {"check": False, "per_task": 224, "batch": 32, "warmup": 2, "steps": 4 if ns.quick else 12}
    print(
        f"flops: {machine()}; {rounds} round(s); {'tiny random encoder' if ns.check else 'MiniLM-L6'} on "
        f"{'+'.join(TASKS)} ({args['per_task']} rows each); batch {args['batch']}; "
        f"{args['warmup']} warm-up + {args['steps']} timed steps",
        flush=True,
    )
    variants = {
        "bam": args,
        "bam_fp32": {**args, "worker": "bam", "precision": "fp32"},
        "bam_torch_dropout": {**args, "worker": "bam", "dropout_rng": "torch"},
    }
    results = alternate(__file__, variants, rounds)
    print(_table(results))
    runs = results["bam"]
    share = median([r["share_of_bf16_peak"] for r in runs])
    fp32_share = median([r["share_of_fp32_peak"] for r in results["bam_fp32"]])
    pairs = zip(runs, results["bam_torch_dropout"], strict=True)
    masks = median([a["achieved_flops"] / b["achieved_flops"] for a, b in pairs])
    pairs = zip(runs, results["bam_fp32"], strict=True)
    over_fp32 = median([a["achieved_flops"] / b["achieved_flops"] for a, b in pairs])
    print(f"bam ({runs[0]['precision']}): median share of the bf16 peak {100 * share:.1f}% (target ≥ 50%)")
    print(
        f"(info) bam_fp32: {100 * fp32_share:.1f}% of the fp32 peak; "
        f"bam / bam_fp32, same round: {over_fp32:.3f}×"
    )
    print(f"(info) sfc64 / torch dropout masks, same round: {masks:.3f}×")
    final_json(
        "flops",
        {
            "rounds": rounds,
            "bam_precision": runs[0]["precision"],
            "achieved_gflops": median([r["achieved_flops"] for r in runs]) / 1e9,
            "peak_fp32_gflops": median([r["peak_fp32_flops"] for r in runs]) / 1e9,
            "peak_bf16_gflops": median([r["peak_bf16_flops"] for r in runs]) / 1e9,
            "share_of_bf16_peak": share,
            "share_of_fp32_peak": median([r["share_of_fp32_peak"] for r in runs]),
            "meets_50pct_bf16": share >= TARGET,
            "fp32_share_of_fp32_peak": fp32_share,
            "bam_over_bam_fp32": over_fp32,
            "sfc64_over_torch_dropout": masks,
        },
    )


if __name__ == "__main__":
    worker_main({"bam": bam_worker}, parent)
