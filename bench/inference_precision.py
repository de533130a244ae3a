"""Which CPU inference path bam keeps: fp32 through oneDNN, bf16 autocast, or oneDNN with bf16 weights.

Issue #29 asks for the three measured side by side in one run, keeping what is fastest at equal
predictions. One process, the packaged MiniLM-L6 (a random 2-layer one with ``--check``), the
same rows for every path (RTE dev pairs, longest first, batches of 32 as ``bam.inference``
makes them); the paths are timed in turn, round after round, so drift hits them alike:

* ``fp32``         -- plain PyTorch layers (``BAM_ONEDNN=0``'s path);
* ``fp32-onednn``  -- ``bam.cpu.onednn``: linear layers as packed oneDNN primitives, bias and
                      GELU fused (bam's fp32 path);
* ``bf16-autocast`` -- plain layers under ``torch.autocast("cpu", torch.bfloat16)`` (bam's bf16
                      path: what ``precision: auto`` runs on CPUs with bf16 units);
* ``bf16-onednn``  -- oneDNN primitives on bf16-packed weights, activations cast to bf16 at
                      each linear layer, the rest in fp32.

"Equal predictions": each path's labels from a fixed random 3-way head are compared with fp32's
(the share that agree) and its pooled features by their largest difference. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from bam.cpu.onednn import ROWS_HINT, onednn_linears
from bam.data.batching import collate, inference_order
from bam.data.features import tokenize
from bam.data.load import load_examples
from bam.model import build_model, pad_id
from bam.tasks import get_task
from common import final_json, machine, median, table

TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2}


class Bf16Linear(nn.Module):
    """A linear layer as one oneDNN primitive on bf16-packed weights (fp32 in, fp32 out)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().bfloat16(), ROWS_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach().bfloat16()
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).bfloat16()
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.float().view(*x.shape[:-1], self.out_features)


@contextlib.contextmanager
def bf16_linears(model: nn.Module) -> Iterator[None]:
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                swapped.append((parent, name, child))
                setattr(parent, name, Bf16Linear(child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


PATHS = {
    "fp32": lambda model: contextlib.nullcontext(),
    "fp32-onednn": onednn_linears,
    "bf16-autocast": lambda model: torch.autocast("cpu", dtype=torch.bfloat16),
    "bf16-onednn": bf16_linears,
}


def runnable(model: nn.Module) -> tuple[dict, dict[str, str]]:
    """The paths this CPU can run, and why each other one cannot: oneDNN packs bf16 weights only
    on CPUs with AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT, and says so when asked on an AVX2 one."""
    paths, missing = {}, {}
    for name, path in PATHS.items():
        try:
            with path(model):
                pass
        except RuntimeError as err:
            missing[name] = str(err).splitlines()[0]
        else:
            paths[name] = path
    return paths, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument(
        "--check", action="store_true", help="tiny random model, 2 rounds of 32 rows: seconds"
    )
    args = parser.parse_args()
    rounds, rows_wanted = (2, 32) if args.check else (args.rounds, args.rows)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    task = get_task("rte")
    model, tokenizer = build_model(
        "minilm-l6", [task], random_init=args.check, overrides=dict(TINY) if args.check else None
    )
    model.eval()
    examples = load_examples(task, "dev", None)
    features = tokenize(examples.subset(np.arange(min(rows_wanted, len(examples)))), tokenizer, 128)
    batches = [
        collate([features], np.zeros(len(b), dtype=np.int64), b, pad_id(tokenizer))
        for b in inference_order(features.lengths, 32)
    ]
    groups = {task.head_name: None}
    paths, missing = runnable(model)
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    outputs: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, path in paths.items():
                with path(model):
                    start = time.perf_counter()
                    answers = []
                    for inputs in batches:
                        everything = torch.arange(inputs["input_ids"].shape[0])
                        answers.append(
                            model(**inputs, groups={**groups, task.head_name: everything})[task.head_name]
                        )
                    seconds[name].append(time.perf_counter() - start)
                outputs[name] = torch.cat([a.float() for a in answers]).numpy()
    rows = len(features)
    speed = {name: rows / median(times) for name, times in seconds.items()}
    reference = outputs["fp32"]
    agree = {name: float(np.mean(out.argmax(-1) == reference.argmax(-1))) for name, out in outputs.items()}
    diff = {name: float(np.abs(out - reference).max()) for name, out in outputs.items()}
    print(f"{machine()}; {rows} RTE dev pairs, batches of 32, {rounds} rounds, median rows/s")
    print(
        table(
            ["path", "rows/s", "× fp32", "× fp32-onednn", "labels = fp32", "max |Δ logit|"],
            [
                [
                    n,
                    f"{speed[n]:.1f}",
                    f"{speed[n] / speed['fp32']:.2f}",
                    f"{speed[n] / speed['fp32-onednn']:.2f}",
                    f"{agree[n]:.3f}",
                    f"{diff[n]:.2e}",
                ]
                for n in paths
            ],
        )
    )
    for name, why in missing.items():
        print(f"{name}: not on this CPU ({why})")
    fastest = max(paths, key=lambda n: speed[n])
    final_json(
        "inference_precision",
        {
            "rows_per_second": speed,
            "bf16_autocast_over_fp32_onednn": speed["bf16-autocast"] / speed["fp32-onednn"],
            "bf16_onednn_over_bf16_autocast": speed["bf16-onednn"] / speed["bf16-autocast"]
            if "bf16-onednn" in speed
            else None,
            "labels_equal_to_fp32": agree,
            "max_logit_difference": diff,
            "fastest": fastest,
            "not_on_this_cpu": missing,
            "check": args.check,
        },
    )


if __name__ == "__main__":
    main()
