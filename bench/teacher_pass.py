"""Teacher pass: bam's ``predict_outputs`` over a training set vs ``transformers.pipeline``.

Both sides run the same weights: a :class:`bam.model.BamModel` on the packaged MiniLM-L6 with an
MRPC head (seeded), and a ``BertForSequenceClassification`` built from exactly those weights (the
worker checks that their logits agree). Same rows (MRPC training pairs), same truncation (128).

* bam           -- ``load_or_tokenize`` into an empty cache + ``predict_outputs`` with length-sorted
                   batches of ``bam.distill.record.TEACHER_BATCH``, as ``record_teacher_outputs`` calls
                   it: what recording teacher outputs costs, tokenization included
* bam_plain     -- the same with ``BAM_ONEDNN=0``: plain PyTorch linear layers instead of oneDNN's
                   packed, bias- and GELU-fused ones (``bam.cpu.onednn``), for information
* pipeline_bs32 -- ``pipeline("text-classification")(pairs, batch_size=32, truncation=True)``
* pipeline      -- the same with the pipeline's default batch size (1)

Each side warms up on 32 rows first. Also reported: bam's forward FLOP rate (2 × parameters ×
real tokens + attention, prediction time only) against the fp32 matmul peak measured in the same
process. Targets: ≥ 1.5× pipeline_bs32, ≥ 2× pipeline, ≥ 75% of peak.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bam.experiment.record import TEACHER_BATCH
from common import (
    alternate,
    best_matmul_flops,
    final_json,
    flop_model,
    glue_mix,
    machine,
    median,
    paired_ratios,
    ratio_line,
    table,
    worker_main,
)

TASK = "mrpc"
MAX_LENGTH = 128
WARMUP_ROWS = 32


def _models() -> tuple[Any, Any]:
    """The seeded BamModel (eval mode) and its tokenizer: identical in every worker."""
    import torch

    from bam.model import build_model
    from bam.tasks import get_task

    torch.manual_seed(0)
    model, tokenizer = build_model("minilm-l6", [get_task(TASK)], pooling="cls")  # maps onto HF's head
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
    import os

    from bam.data.features import load_or_tokenize

    os.environ["BAM_ONEDNN"] = "0" if args.get("plain_linears") else "1"
    from bam.inference.forward import predict_outputs

    model, tokenizer = _models()
    examples = glue_mix([TASK], args["rows"])[0]
    pad_id = tokenizer.pad_token_id
    peak_before = best_matmul_flops()
    with tempfile.TemporaryDirectory() as tmp:
        warm = load_or_tokenize(
            examples.subset(range(WARMUP_ROWS)), tokenizer, MAX_LENGTH, Path(tmp) / "warm"
        )
        predict_outputs(model, warm, TASK, pad_id)
        start = time.perf_counter()
        features = load_or_tokenize(examples, tokenizer, MAX_LENGTH, Path(tmp) / "cache")
        tokenized = time.perf_counter()
        predict_outputs(model, features, TASK, pad_id, batch_size=args["batch_size"])
        end = time.perf_counter()
    peak = max(peak_before, best_matmul_flops())
    flops = flop_model(model).flops(features.lengths, train=False)
    return {
        "rows_per_second": len(examples) / (end - start),
        "predict_rows_per_second": len(examples) / (end - tokenized),
        "tokenize_seconds": tokenized - start,
        "achieved_flops": flops / (end - tokenized),
        "peak_flops": peak,
        "share_of_peak": flops / (end - tokenized) / peak,
        "mean_length": float(features.lengths.mean()),
    }


def pipeline_worker(args: dict[str, Any], batch_size: int | None) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import pipeline

    from bam.data.batching import collate
    from bam.data.features import tokenize

    model, tokenizer = _models()
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
    pipe(pairs[:WARMUP_ROWS], **kwargs)
    start = time.perf_counter()
    out = pipe(pairs, **kwargs)
    seconds = time.perf_counter() - start
    assert len(out) == len(pairs)
    return {"rows_per_second": len(pairs) / seconds, "logit_max_diff": diff}


WORKERS = {
    "bam": bam_worker,
    "bam_plain": lambda a: bam_worker(dict(a, plain_linears=True)),
    "pipeline_bs32": lambda a: pipeline_worker(a, 32),
    "pipeline": lambda a: pipeline_worker(a, None),
}


def parent(ns: argparse.Namespace) -> None:
    rounds = ns.rounds or (1 if ns.quick else 3)
    args = {"rows": 128 if ns.quick else 640, "batch_size": TEACHER_BATCH}
    print(
        f"teacher_pass: {machine()}; {rounds} round(s); {args['rows']} {TASK} training rows; "
        f"bam batch {args['batch_size']}",
        flush=True,
    )
    results = alternate(__file__, {name: args for name in WORKERS}, rounds)
    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                median([r["rows_per_second"] for r in runs]),
                " ".join(f"{r['rows_per_second']:.1f}" for r in runs),
                " ".join(f"{r['foreign_cpu']:.2f}" for r in runs),
            ]
        )
    print(table(["variant", "rows/s", "per round", "foreign cpu"], rows))
    for name in ("bam", "bam_plain"):
        runs = results[name]
        print(
            f"{name} predict only: {median([r['predict_rows_per_second'] for r in runs]):.1f} rows/s; "
            f"tokenize {median([r['tokenize_seconds'] for r in runs]):.2f}s; mean length "
            f"{runs[0]['mean_length']:.1f}; {median([r['achieved_flops'] for r in runs]) / 1e9:.1f} GFLOP/s "
            f"= {100 * median([r['share_of_peak'] for r in runs]):.1f}% of "
            f"{median([r['peak_flops'] for r in runs]) / 1e9:.1f} peak"
        )
    vs32 = paired_ratios(results, "bam", "pipeline_bs32", "rows_per_second")
    vs1 = paired_ratios(results, "bam", "pipeline", "rows_per_second")
    onednn = paired_ratios(results, "bam", "bam_plain", "rows_per_second")
    share = median([r["share_of_peak"] for r in results["bam"]])
    print(ratio_line("bam/pipeline_bs32 rows/s", vs32, 1.5))
    print(ratio_line("bam/pipeline(default) rows/s", vs1, 2.0))
    print(ratio_line("(info) bam/bam_plain rows/s (what oneDNN is worth)", onednn, None))
    print(f"bam forward share of peak: {100 * share:.1f}% (target ≥ 75%)")
    final_json(
        "teacher_pass",
        {
            "rounds": rounds,
            "ratio_vs_pipeline_bs32": median(vs32),
            "ratio_vs_pipeline_default": median(vs1),
            "share_of_peak": share,
            "onednn_speedup": median(onednn),
            "bam_plain_share_of_peak": median([r["share_of_peak"] for r in results["bam_plain"]]),
            "meets_1.5x_bs32": median(vs32) >= 1.5,
            "meets_2x_default": median(vs1) >= 2.0,
            "meets_75pct": share >= 0.75,
        },
    )


if __name__ == "__main__":
    worker_main(WORKERS, parent)
