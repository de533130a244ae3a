"""Teacher pass: bam's ``predict_outputs`` over a training set vs ``transformers.pipeline`` at its best.

Both sides run the same weights: a :class:`bam.model.BamModel` on the packaged MiniLM-L6 with an
MRPC head (seeded), and a ``BertForSequenceClassification`` built from exactly those weights (the
worker checks that their fp32 logits agree). Same rows (MRPC training pairs), same truncation (128).

* bam               -- ``load_or_tokenize`` into an empty cache + ``predict_outputs`` with length-sorted
                       batches of ``TEACHER_BATCH`` (``bam.experiment.record``), as teacher outputs are
                       recorded, in ``precision: auto`` (bf16 autocast where the CPU has bf16 units):
                       what recording teacher outputs costs, tokenization included
* bam_fp32          -- the same in fp32 (oneDNN's packed, bias- and GELU-fused linear layers,
                       ``bam.cpu.onednn``), for information
* pipeline_bs32     -- ``pipeline("text-classification")(pairs, batch_size=32, truncation=True)``, fp32
* pipeline_bs32_bf16 -- the same under ``torch.autocast("cpu", torch.bfloat16)``
* pipeline          -- the pipeline's default batch size (1), fp32

Each side warms up on 32 rows first. Also reported: bam's forward FLOP rate (2 × parameters ×
real tokens + attention, prediction time only) against the fp32 and the bf16 matmul peak measured
in the same process. Targets: ≥ 1.5× the faster of pipeline_bs32 and pipeline_bs32_bf16 in each
round (the pipeline's best configuration at batch 32), ≥ 2× pipeline (default), ≥ 75% of the
matmul peak in the precision bam ran. ``--check``: a tiny random encoder, 16 rows, one round.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from typing import Any

from bam.experiment.record import TEACHER_BATCH
from bam.flops import flop_model
from common import (
    TINY,
    alternate,
    final_json,
    glue_mix,
    machine,
    matmul_peaks,
    max_peaks,
    median,
    paired_ratios,
    ratio_line,
    ratios_to_best,
    table,
    worker_main,
)

TASK = "mrpc"
MAX_LENGTH = 128
PEERS = ("pipeline_bs32", "pipeline_bs32_bf16")  # the pipeline at batch 32; its best is the faster


def _models(check: bool) -> tuple[Any, Any]:
    """The seeded BamModel (eval mode) and its tokenizer: identical in every worker."""
    import torch

    from bam.model import build_model
    from bam.tasks import get_task

    torch.manual_seed(0)
    model, tokenizer = build_model(  # [CLS] pooling maps onto HF's pooler and head
        "minilm-l6",
        [get_task(TASK)],
        pooling="cls",
        random_init=check,
        overrides=dict(TINY) if check else None,
    )
    return model.eval(), tokenizer


def _as_sequence_classifier(model: Any) -> Any:
    """A ``*ForSequenceClassification`` holding exactly the BamModel's encoder and head weights."""
    import copy

    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(model.encoder.config)
    config.num_labels = model.head_specs[TASK].num_outputs
    hf = AutoModelForSequenceClassification.from_config(config)
    hf.base_model.load_state_dict(model.encoder.state_dict())
    hf.classifier.load_state_dict(model.heads[TASK][1].state_dict())
    return hf.eval()


def bam_worker(args: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    import torch

    from bam.data.features import load_or_tokenize
    from bam.inference.forward import predict_outputs
    from bam.model import pad_id
    from bam.precision import resolve_precision

    model, tokenizer = _models(args["check"])
    precision = resolve_precision(args.get("precision", "auto"), torch.device("cpu"))
    examples = glue_mix([TASK], args["rows"])[0]
    pad = pad_id(tokenizer)
    peaks_before = matmul_peaks()
    with tempfile.TemporaryDirectory() as tmp:
        warm_rows = examples.subset(range(args["warmup_rows"]))
        warm = load_or_tokenize(warm_rows, tokenizer, MAX_LENGTH, Path(tmp) / "warm")
        predict_outputs(model, warm, TASK, pad, batch_size=args["batch_size"], precision=precision)
        start = time.perf_counter()
        features = load_or_tokenize(examples, tokenizer, MAX_LENGTH, Path(tmp) / "cache")
        tokenized = time.perf_counter()
        outputs = predict_outputs(
            model, features, TASK, pad, batch_size=args["batch_size"], precision=precision
        )
        end = time.perf_counter()
    assert outputs.shape[0] == len(examples) and bool((outputs == outputs).all()), "NaN in bam's outputs"
    peaks = max_peaks(peaks_before, matmul_peaks())
    rate = flop_model(model).flops(features.lengths, train=False) / (end - tokenized)
    return {
        "rows_per_second": len(examples) / (end - start),
        "predict_rows_per_second": len(examples) / (end - tokenized),
        "tokenize_seconds": tokenized - start,
        "precision": precision.name,
        "achieved_flops": rate,
        "peak_fp32_flops": peaks["fp32"],
        "peak_bf16_flops": peaks["bf16"],
        "share_of_peak": rate / peaks["bf16" if precision.mixed else "fp32"],
        "mean_length": float(features.lengths.mean()),
    }


def pipeline_worker(args: dict[str, Any], batch_size: int | None, bf16: bool = False) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import pipeline

    from bam.data.batching import collate
    from bam.data.features import tokenize

    model, tokenizer = _models(args["check"])
    hf = _as_sequence_classifier(model)
    examples = glue_mix([TASK], args["rows"])[0]
    # The same weights must give the same logits, or the comparison is not of the same model.
    probe = tokenize(examples.subset(range(8)), tokenizer, MAX_LENGTH)
    inputs = collate([probe], np.zeros(8, dtype=np.int64), np.arange(8), tokenizer.pad_token_id)
    with torch.inference_mode():
        ours = model(**inputs)[TASK]
        theirs = hf(**inputs).logits
    diff = float((ours - theirs).abs().max())
    assert diff < 1e-4, f"BamModel and its sequence-classifier export disagree by {diff}"

    pipe = pipeline("text-classification", model=hf, tokenizer=tokenizer, device="cpu")
    pairs = [{"text": a, "text_pair": b} for a, b in zip(*examples.texts, strict=True)]
    kwargs: dict[str, Any] = {"truncation": True, "max_length": MAX_LENGTH}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    mixed = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with mixed:
        pipe(pairs[: args["warmup_rows"]], **kwargs)
        start = time.perf_counter()
        out = pipe(pairs, **kwargs)
        seconds = time.perf_counter() - start
    assert len(out) == len(pairs)
    return {
        "rows_per_second": len(pairs) / seconds,
        "logit_max_diff": diff,
        "precision": "bf16" if bf16 else "fp32",
    }


WORKERS = {
    "bam": bam_worker,
    "pipeline_bs32": lambda a: pipeline_worker(a, 32),
    "pipeline_bs32_bf16": lambda a: pipeline_worker(a, 32, bf16=True),
    "pipeline": lambda a: pipeline_worker(a, None),
}


def _settings(ns: argparse.Namespace) -> dict[str, Any]:
    rows = 16 if ns.check else 128 if ns.quick else 640
    return {
        "check": ns.check,
        "rows": rows,
        "warmup_rows": 8 if ns.check else 32,
        "batch_size": TEACHER_BATCH,
    }


def _report_bam(results: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("bam", "bam_fp32"):
        runs = results[name]
        print(
            f"{name} ({runs[0]['precision']}) predict only: "
            f"{median([r['predict_rows_per_second'] for r in runs]):.1f} rows/s; "
            f"tokenize {median([r['tokenize_seconds'] for r in runs]):.2f}s; mean length "
            f"{runs[0]['mean_length']:.1f}; {median([r['achieved_flops'] for r in runs]) / 1e9:.1f} GFLOP/s "
            f"= {100 * median([r['share_of_peak'] for r in runs]):.1f}% of its precision's peak "
            f"(fp32 peak {median([r['peak_fp32_flops'] for r in runs]) / 1e9:.1f}, "
            f"bf16 peak {median([r['peak_bf16_flops'] for r in runs]) / 1e9:.1f} GFLOP/s)"
        )


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or (1 if ns.quick else 3)
    args = _settings(ns)
    print(
        f"teacher_pass: {machine()}; {rounds} round(s); {args['rows']} {TASK} training rows; "
        f"bam batch {args['batch_size']}" + ("; --check: tiny random encoder" if ns.check else ""),
        flush=True,
    )
    variants = {
        "bam": args,
        "bam_fp32": {**args, "worker": "bam", "precision": "fp32"},
        **{name: args for name in WORKERS if name != "bam"},
    }
    results = alternate(__file__, variants, rounds)
    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                runs[0]["precision"],
                median([r["rows_per_second"] for r in runs]),
                " ".join(f"{r['rows_per_second']:.1f}" for r in runs),
                " ".join(f"{r['foreign_cpu']:.2f}" for r in runs),
            ]
        )
    print(table(["variant", "precision", "rows/s", "per round", "foreign cpu"], rows))
    _report_bam(results)
    best, winners = ratios_to_best(results, "bam", PEERS, "rows_per_second")
    vs1 = paired_ratios(results, "bam", "pipeline", "rows_per_second")
    fp32_best, _ = ratios_to_best(results, "bam_fp32", PEERS, "rows_per_second")
    share = median([r["share_of_peak"] for r in results["bam"]])
    print(ratio_line("bam/pipeline best (bs32) rows/s", best, 1.5) + f"; best per round: {' '.join(winners)}")
    print(ratio_line("bam/pipeline(default) rows/s", vs1, 2.0))
    print(ratio_line("(info) bam_fp32/pipeline best rows/s", fp32_best, None))
    print(
        ratio_line(
            "(info) bam/bam_fp32 rows/s", paired_ratios(results, "bam", "bam_fp32", "rows_per_second"), None
        )
    )
    print(f"bam forward share of its precision's peak: {100 * share:.1f}% (target ≥ 75%)")

    def rate(name: str) -> float:
        return median([r["rows_per_second"] for r in results[name]])

    final_json(
        "teacher_pass",
        {
            "rounds": rounds,
            "bam_precision": results["bam"][0]["precision"],
            **{f"{name}_rows_per_second": rate(name) for name in results},
            "pipeline_best_per_round": winners,
            "ratio_vs_pipeline_best": median(best),
            "ratio_vs_pipeline_default": median(vs1),
            "share_of_peak": share,
            "share_of_bf16_peak": median(
                [r["achieved_flops"] / r["peak_bf16_flops"] for r in results["bam"]]
            ),
            "fp32_ratio_vs_pipeline_best": median(fp32_best),
            "fp32_share_of_fp32_peak": median([r["share_of_peak"] for r in results["bam_fp32"]]),
            "meets_1.5x_best": median(best) >= 1.5,
            "meets_2x_default": median(vs1) >= 2.0,
            "meets_75pct": share >= 0.75,
        },
    )


if __name__ == "__main__":
    worker_main(WORKERS, parent)
