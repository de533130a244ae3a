"""Every head in one pass: ``bam predict --task all`` on a k-head model vs k single-task teachers.

A multi-task student answers k tasks with one encoder; served one task at a time it would pay for
k encoder passes. Both sides run bam's public prediction path (``predict_file``: read the JSONL
input, tokenize, forward in length-sorted batches, write JSONL), on the same rows:

* all      -- one k-head model, ``predict_file(task="all")``: one read, one tokenization and one
              encoder pass per batch, every head applied
* teachers -- k single-task models, each ``predict_file(task=its task)`` in turn

The teachers are the k-head model's own encoder with one of its heads each, so the work is the
same model's and the answers must agree: the parent compares every row's outputs (max difference
≤ 1e-5, else it fails). Models are loaded and warmed up on 32 rows before the timed window.
Target: ``all`` ≥ 0.8·k × the teachers' rows/s. Rows: MRPC training pairs (as teacher_pass), heads
mrpc, rte, stsb, qnli (pair tasks: one pass reads one input). ``--check``: a tiny random encoder
and 48 rows, one round.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    alternate,
    final_json,
    glue_mix,
    machine,
    median,
    paired_ratios,
    ratio_line,
    table,
    worker_main,
)

HEADS = ["mrpc", "rte", "stsb", "qnli"]
ROWS, CHECK_ROWS = 640, 48
WARMUP_ROWS = 32
# The --check encoder: tests/helpers.TINY's shape, random weights.
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2}
TOLERANCE = 1e-5


def _write_rows(path: Path, texts: tuple[list[str], ...]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i, (a, b) in enumerate(zip(*texts, strict=True)):
            handle.write(json.dumps({"id": str(i), "text_a": a, "text_b": b}) + "\n")


def _save_models(folder: Path, check: bool) -> dict[str, Any]:
    """The k-head model and, for each head, a teacher holding that head on a copy of its encoder."""
    import copy

    import torch

    from bam.model import BamModel, build_model, save_bam_model
    from bam.tasks import get_task

    torch.manual_seed(0)
    model, tokenizer = build_model(
        "minilm-l6",
        [get_task(t) for t in HEADS],
        random_init=check,
        overrides=dict(TINY) if check else None,
        pooling="cls",
    )
    extra = {"train_config": {"max_length": 128}}
    save_bam_model(model, tokenizer, folder / "all", extra)
    teachers = {}
    for head in HEADS:
        single = BamModel(copy.deepcopy(model.encoder), [model.head_specs[head]], pooling=model.pooling)
        single.heads[head].load_state_dict(model.heads[head].state_dict())
        teachers[head] = str(save_bam_model(single, tokenizer, folder / f"teacher-{head}", extra))
    return {"all": str(folder / "all"), "teachers": teachers}


def _timed(runs: list[tuple[Any, str, str]], source: str, warm: str, out_dir: Path) -> float:
    """Seconds to predict ``source`` with each (predictor, task, output name) in turn, after a warm-up."""
    from bam.inference.predict import predict_file

    for predictor, task, name in runs:
        predict_file("", task, warm, str(out_dir / f"warm-{name}"), predictor=predictor)
    start = time.perf_counter()
    for predictor, task, name in runs:
        predict_file("", task, source, str(out_dir / name), predictor=predictor)
    return time.perf_counter() - start


def all_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.inference.predict import Predictor

    predictor = Predictor.load(args["models"]["all"], device="cpu")
    seconds = _timed([(predictor, "all", "all.jsonl")], args["input"], args["warm"], Path(args["out"]))
    return {"rows_per_second": args["rows"] / seconds, "seconds": seconds}


def teachers_worker(args: dict[str, Any]) -> dict[str, Any]:
    from bam.inference.predict import Predictor

    runs = [
        (Predictor.load(folder, device="cpu"), head, f"{head}.jsonl")
        for head, folder in args["models"]["teachers"].items()
    ]
    seconds = _timed(runs, args["input"], args["warm"], Path(args["out"]))
    return {"rows_per_second": args["rows"] / seconds, "seconds": seconds}


WORKERS = {"all": all_worker, "teachers": teachers_worker}


def _flat(answer: dict[str, Any]) -> list[float]:
    return [answer["score"]] if "score" in answer else list(answer["probabilities"].values())


def max_difference(out_dir: Path) -> float:
    """The largest difference between any head's output in ``all.jsonl`` and its teacher's file."""
    together = [json.loads(line) for line in (out_dir / "all.jsonl").read_text().splitlines()]
    worst = 0.0
    for head in HEADS:
        alone = [json.loads(line) for line in (out_dir / f"{head}.jsonl").read_text().splitlines()]
        if [r["id"] for r in alone] != [r["id"] for r in together]:
            raise SystemExit(f"all_heads: {head}: the teacher's rows differ from --task all's")
        for a, b in zip(together, alone, strict=True):
            worst = max(worst, *(abs(x - y) for x, y in zip(_flat(a[head]), _flat(b), strict=True)))
    return worst


def parent(ns: argparse.Namespace) -> None:
    check = bool(getattr(ns, "check", False))
    rounds = ns.rounds or (1 if ns.quick or check else 3)
    n = CHECK_ROWS if check else 128 if ns.quick else ROWS
    k = len(HEADS)
    target = 0.8 * k
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        examples = glue_mix(["mrpc"], n)[0]
        _write_rows(folder / "rows.jsonl", examples.texts)
        _write_rows(folder / "warm.jsonl", tuple(column[:WARMUP_ROWS] for column in examples.texts))
        models = _save_models(folder / "models", check)
        print(
            f"all_heads: {machine()}; {rounds} round(s); {len(examples)} mrpc training pairs; heads "
            f"{', '.join(HEADS)} ({'tiny random encoder' if check else 'MiniLM-L6'})",
            flush=True,
        )
        variants = {}
        for name in WORKERS:
            (folder / name).mkdir()
            variants[name] = {
                "models": models,
                "input": str(folder / "rows.jsonl"),
                "warm": str(folder / "warm.jsonl"),
                "out": str(folder / name),
                "rows": len(examples),
            }
        results = alternate(__file__, variants, rounds)
        all_out = folder / "all"
        for head in HEADS:  # the last round's teacher outputs beside the last all-heads file
            (folder / "teachers" / f"{head}.jsonl").replace(all_out / f"{head}.jsonl")
        difference = max_difference(all_out)
    rows = [
        [
            name,
            median([r["rows_per_second"] for r in runs]),
            " ".join(f"{r['rows_per_second']:.1f}" for r in runs),
            " ".join(f"{r['foreign_cpu']:.2f}" for r in runs),
            median([r["peak_rss_mb"] for r in runs]),
        ]
        for name, runs in results.items()
    ]
    print(table(["variant", "rows/s", "per round", "foreign cpu", "peak RSS MB"], rows))
    ratios = paired_ratios(results, "all", "teachers", "rows_per_second")
    print(ratio_line(f"all/teachers rows/s (k = {k})", ratios, target))
    print(f"max |all - teacher| over every head and row: {difference:.2e} (must be ≤ {TOLERANCE:g})")
    saving = 1 - 1 / median(ratios)
    print(f"serving {k} tasks with one pass takes {100 * saving:.0f}% less time than {k} teachers in turn")
    final_json(
        "all_heads",
        {
            "rounds": rounds,
            "heads": k,
            "rows": n,
            "ratio_all_vs_teachers": median(ratios),
            "target_ratio": target,
            "time_saved": saving,
            "max_abs_difference": difference,
            "meets_0.8k": median(ratios) >= target,
            "outputs_agree": difference <= TOLERANCE,
        },
    )
    if difference > TOLERANCE:
        raise SystemExit(1)


if __name__ == "__main__":
    worker_main(WORKERS, parent)
