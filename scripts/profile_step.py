"""Where a training step's time goes: bam's real loop under ``torch.profiler``, ops grouped by kind.

``bench/flops.py`` says how far bam's loop is from the matmul peak; this says why. It trains the
packaged MiniLM-L6 (or a tiny random encoder with ``--check``) on RTE + MRPC rows for a few steps,
through ``bam.train.loop.train`` unchanged except that dev evaluation is skipped, profiles the
steps after a warm-up, and prints each kind's share of the profiled CPU time (self time of the ops,
so nothing is counted twice) and the ten costliest ops:

    python scripts/profile_step.py --precision bf16 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from bam.config.train import TrainConfig
from bam.data.batching import steps_per_epoch
from bam.train.loop import StepInfo, train

# Op name → kind. Anything not named here is "other".
KINDS = {
    "aten::mm": "matmul",
    "aten::addmm": "matmul",
    "aten::bmm": "matmul",
    "aten::copy_": "dtype casts and copies",
    "aten::_softmax": "softmax",
    "aten::_softmax_backward_data": "softmax",
    "aten::gelu": "GELU",
    "aten::gelu_backward": "GELU",
    "aten::native_layer_norm": "LayerNorm",
    "aten::native_layer_norm_backward": "LayerNorm",
    "aten::_fused_adamw_": "optimizer step",
    "aten::linalg_vector_norm": "gradient clipping",
    "aten::fill_": "zeroing (word-embedding gradient)",
    "aten::mul": "elementwise mul/add (dropout, scaling)",
    "aten::mul_": "elementwise mul/add (dropout, scaling)",
    "aten::add": "elementwise mul/add (dropout, scaling)",
    "aten::add_": "elementwise mul/add (dropout, scaling)",
    "aten::ge": "elementwise mul/add (dropout, scaling)",
    "aten::masked_fill_": "attention mask",
}
TASKS = ["rte", "mrpc"]


def profiled_config(args: argparse.Namespace) -> TrainConfig:
    """A bam stage of exactly ``warmup + steps`` steps with no checkpoints and no logging."""
    rows, total = (32, 2) if args.check else (224, args.warmup + args.steps)
    per_epoch = steps_per_epoch([rows] * len(TASKS), args.batch)
    encoder: dict[str, Any] = {"model": "minilm-l6", "random_init": args.check}
    if args.check:
        encoder["encoder_overrides"] = {"num_hidden_layers": 2, "hidden_size": 64,
                                        "num_attention_heads": 2, "intermediate_size": 128}  # fmt: skip
    return TrainConfig(
        tasks=TASKS,
        train_cap=dict.fromkeys(TASKS, rows),
        batch_size=args.batch,
        epochs=(total - 0.5) / per_epoch,  # exactly `total` steps
        precision=args.precision,
        num_threads=args.threads,
        dropout_rng=args.dropout_rng,
        checkpoint_every=0,
        log_with=[],
        **encoder,
    )


def shares(events: Any) -> dict[str, float]:
    """Self CPU time per kind, as a share of all profiled self time."""
    by_kind: dict[str, float] = defaultdict(float)
    for event in events:
        kind = KINDS.get(event.key, "host overhead (Python, the loop)" if event.key.startswith("ProfilerStep")
                         else "other")  # fmt: skip
        by_kind[kind] += event.self_cpu_time_total
    total = sum(by_kind.values()) or 1.0
    return {kind: time / total for kind, time in sorted(by_kind.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--dropout-rng", default="sfc64", choices=["sfc64", "torch"])
    parser.add_argument("--check", action="store_true", help="a tiny random encoder, 1 profiled step")
    args = parser.parse_args()
    warmup, active = (1, 1) if args.check else (args.warmup, args.steps)
    profiler = profile(
        activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=warmup, active=active, repeat=1)
    )

    def on_step(info: StepInfo) -> None:
        profiler.step()

    def no_dev(model: Any) -> dict[str, Any]:  # dev passes are not training steps
        return {"scores": dict.fromkeys(model.head_specs, 0.0), "bam_avg": 0.0, "glue_avg": 0.0}

    with tempfile.TemporaryDirectory() as tmp, profiler:
        result = train(profiled_config(args), Path(tmp) / "run", quiet=True, cache_dir=Path(tmp) / "cache",
                       on_step=on_step, evaluator=no_dev)  # fmt: skip
    events = profiler.key_averages()
    print(f"precision {result.precision}, {torch.get_num_threads()} thread(s), batch {args.batch}, "
          f"{active} profiled step(s) after {warmup}")  # fmt: skip
    for kind, share in shares(events).items():
        print(f"  {share:6.1%}  {kind}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))


if __name__ == "__main__":
    main()
