"""GPU training throughput and model FLOP utilisation: bam vs ``Trainer(bf16=True, group_by_length)``.

One command, under 5 minutes on one GPU: ``python bench/gpu.py``. Random-initialised BERT-base
and BERT-large (``BertConfig`` shapes, no hub: the weights are drawn once, seeded, and saved to a
local folder with the packaged MiniLM-L6 tokenizer, the same uncased 30,522-word vocabulary),
so both sides start from the same weights. The rows: one epoch of bam's sampler over 5 × 1,024
GLUE training rows (rte, mrpc, stsb, cola, sst2), handed to the Trainer as a dataset (each side
reports a digest of the row lengths it trained); batch 32, lr 5e-5 with 10% warm-up, max length
128, AdamW, clipping at 1.0. Variants, each in a fresh process, alternating per round:

* bam_<size>     -- ``bam.train.loop.train`` with ``precision: auto`` (bf16 autocast on a GPU with
                    bf16 tensor cores), [CLS] pooling, multi-task heads, length-grouped batches
* trainer_<size> -- ``transformers.Trainer`` with ``bf16=True``, length grouping, dynamic padding,
                    no evaluation, saving or logging; one 2-way head for all rows

Each side first trains a few untimed steps of its own model; then one epoch is timed from its
first step to the end of its last (the GPU synchronised). Reported: examples/s, and model FLOP
utilisation (training FLOPs of the real tokens, ``bam.flops``: the formula of ``bam run
--dry-run``) against the dense bf16 peak of a small table of data-centre GPUs and against the
best bf16 ``torch.mm`` measured in the same process. Rounds stop early to stay within the time budget.

Target (issue #29): bam ≥ 1.2× the Trainer on BERT-base; MFU reported for both sizes.
``--check``: the same on CPU with a tiny random encoder and 5 × 8 rows, for CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    TINY,
    alternate,
    best_matmul_flops,
    final_json,
    median,
    ratio_line,
    table,
    worker_main,
)
from loops import TrainerRun, bam_config, epochs_for_steps, timed_bam_train, timed_trainer

TASKS = ["rte", "mrpc", "stsb", "cola", "sst2"]
SHAPES = {
    "base": {
        "num_hidden_layers": 12,
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "large": {
        "num_hidden_layers": 24,
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
}
# Dense (not sparse) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets; the first
# name found in torch.cuda.get_device_name() counts (so "H100 PCIe" before "H100", "A100" before "A10").
PEAK_TFLOPS = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)
TARGET = 1.2  # bam / Trainer(bf16) on BERT-base
BUDGET_S = 270.0  # no new round once a round would end past this


def table_peak(name: str) -> float | None:
    """The dense bf16 peak (FLOP/s) of a GPU named like ``name``, or None if not in the table."""
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS if key in name), None)


def save_encoder(folder: Path, shape: dict[str, Any]) -> Path:
    """A seeded random BERT of ``shape`` with the MiniLM-L6 tokenizer, as a local model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging

    from bam.model import resolve_encoder_path

    logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm-l6"))
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **shape)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _device(args: dict[str, Any]) -> tuple[str, str]:
    """("cuda" or "cpu", the device's name), the latter for the peak table."""
    import torch

    if args["check"]:
        return "cpu", "cpu"
    return "cuda", torch.cuda.get_device_name(0)


def _config(args: dict[str, Any], epochs: float) -> Any:
    return bam_config(
        {"model": args["folder"], "random_init": False, "encoder_overrides": {}},
        TASKS,
        args["per_task"],
        batch_size=args["batch"],
        learning_rate=5e-5,
        warmup_fraction=0.1,
        epochs=epochs,
        precision="auto",
    )


def _with_peaks(result: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    kind, name = _device(args)
    measured = best_matmul_flops(dtype="bf16", device=kind)
    listed = table_peak(name) if kind == "cuda" else None
    result.update(device=name, measured_bf16_peak=measured, mfu_measured=result["flops"] / measured)
    result.update(table_bf16_peak=listed, mfu_table=result["flops"] / listed if listed else None)
    return result


def bam_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.data.batching import steps_per_epoch

    per_epoch = steps_per_epoch([args["per_task"]] * len(TASKS), args["batch"])
    with tempfile.TemporaryDirectory() as tmp:
        warm = _config(args, epochs_for_steps(args["warmup"], per_epoch))
        timed_bam_train(warm, Path(tmp) / "warm", Path(tmp) / "cache")
        log = timed_bam_train(_config(args, 1.0), Path(tmp) / "run", Path(tmp) / "cache")
    assert len(log.starts) == per_epoch, (len(log.starts), per_epoch)
    return _with_peaks(log.summary(), args)


def trainer_worker(args: dict[str, Any]) -> dict[str, Any]:
    run = TrainerRun(bf16=True, group_by_length=True, use_cpu=args["check"])
    encoder = {"model": args["folder"], "random_init": False, "encoder_overrides": {}}
    return _with_peaks(timed_trainer(run, _config(args, 1.0), encoder, args["warmup"]), args)


def _rounds(variants: dict[str, dict[str, Any]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` alternating rounds, fewer if the next one would end past the time budget."""
    results: dict[str, list[dict[str, Any]]] = {}
    began = time.perf_counter()
    for done in range(rounds):
        start = time.perf_counter()
        # GPU-bound work: a busy host CPU matters less than the 5-minute budget, so wait briefly.
        for name, runs in alternate(__file__, variants, 1, extra_rounds=0, max_wait=5.0).items():
            results.setdefault(name, []).extend(runs)
        spent = time.perf_counter() - start
        if done + 1 < rounds and time.perf_counter() - began + spent > BUDGET_S:
            print(
                f"  stopping after {done + 1} round(s): another would pass {BUDGET_S:.0f} s", file=sys.stderr
            )
            break
    return results


def _median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median of ``key`` over runs, or None where it is unknown (a GPU not in the peak table)."""
    values = [r[key] for r in runs if r[key] is not None]
    return median(values) if values else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _summarise(results: dict[str, list[dict[str, Any]]], sizes: list[str]) -> dict[str, Any]:
    rows, verdict = [], {}
    for size in sizes:
        ours, theirs = results[f"bam_{size}"], results[f"trainer_{size}"]
        ratios = [
            a["examples_per_second"] / b["examples_per_second"] for a, b in zip(ours, theirs, strict=True)
        ]
        for name, runs in ((f"bam_{size}", ours), (f"trainer_{size}", theirs)):
            rows.append(
                [
                    name,
                    runs[0]["precision"],
                    median([r["examples_per_second"] for r in runs]),
                    median([r["flops"] for r in runs]) / 1e12,
                    _percent(_median_of(runs, "mfu_table")),
                    _percent(_median_of(runs, "mfu_measured")),
                    runs[0]["pad_fraction"],
                    " ".join(f"{r['examples_per_second']:.1f}" for r in runs),
                ]
            )
        print(
            ratio_line(
                f"bam/Trainer(bf16) examples/s, BERT-{size}", ratios, TARGET if size == "base" else None
            )
        )
        verdict[size] = {
            "bam_examples_per_second": median([r["examples_per_second"] for r in ours]),
            "trainer_examples_per_second": median([r["examples_per_second"] for r in theirs]),
            "ratio": median(ratios),
            "bam_mfu_table": _median_of(ours, "mfu_table"),
            "bam_mfu_measured": _median_of(ours, "mfu_measured"),
            "trainer_mfu_table": _median_of(theirs, "mfu_table"),
            "trainer_mfu_measured": _median_of(theirs, "mfu_measured"),
            "same_rows": all(
                a["lengths_digest"] == b["lengths_digest"] for a, b in zip(ours, theirs, strict=True)
            ),
        }
    headers = [
        "variant",
        "precision",
        "examples/s",
        "TFLOP/s",
        "MFU % (table)",
        "MFU % (measured)",
        "pad frac",
    ]
    print(table([*headers, "ex/s per round"], rows))
    return verdict


def parent(ns: argparse.Namespace) -> None:
    import torch

    if not ns.check and not torch.cuda.is_available():
        raise SystemExit(
            "bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is false); --check runs on CPU"
        )
    if not ns.check:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # one GPU: the Trainer would DataParallel over all
    rounds = ns.rounds or (1 if ns.quick else 3)
    sizes = ["base"] if ns.quick else ["base", "large"]
    settings = {"check": ns.check, "per_task": 8 if ns.check else 1024, "batch": 8 if ns.check else 32}
    settings["warmup"] = 1 if ns.check else 10
    device = "CPU (--check: tiny random encoder)" if ns.check else torch.cuda.get_device_name(0)
    print(
        f"gpu: {device}; torch {torch.__version__}; up to {rounds} round(s); one epoch of {len(TASKS)}×"
        f"{settings['per_task']} GLUE rows; batch {settings['batch']}; BERT-{' and BERT-'.join(sizes)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for size in sizes:
            folder = save_encoder(Path(tmp) / size, dict(TINY) if ns.check else SHAPES[size])
            args = {**settings, "folder": str(folder)}
            variants[f"bam_{size}"] = {**args, "worker": "bam"}
            variants[f"trainer_{size}"] = {**args, "worker": "trainer"}
        results = _rounds(variants, rounds)
    verdict = _summarise(results, sizes)
    final_json(
        "gpu",
        {
            "device": results[f"bam_{sizes[0]}"][0]["device"],
            "rounds": len(results[f"bam_{sizes[0]}"]),
            **verdict,
            "meets_1.2x_base": verdict["base"]["ratio"] >= TARGET,
        },
    )
    if ns.check and not all(v["same_rows"] for v in verdict.values()):
        raise SystemExit("gpu --check: bam and the Trainer trained different rows")


if __name__ == "__main__":
    worker_main({"bam": bam_worker, "trainer": trainer_worker}, parent)
