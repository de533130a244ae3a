"""Shared helpers for bam's benchmarks: fresh-process alternation, timing, FLOP counts, tables.

Every benchmark compares variants that each run in a fresh subprocess (``--worker NAME``), in the
order A B A B … so that neither side profits from a warm cache or suffers from a noisy neighbour
more than the other; ratios are taken per round and their median is reported. The machine is
shared, so each run records how much CPU other processes took meanwhile, and noisy rounds are
repeated. A worker prints one ``BENCH_RESULT {json}`` line; the parent prints a table and, last,
one JSON line of ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bam.cpu.machine import busy_share, cpu_name, cpu_seconds  # cpu_name: as train_done.json

THREADS = 2
RESULT_PREFIX = "BENCH_RESULT "
REPO = Path(__file__).resolve().parent.parent

Worker = Callable[[dict[str, Any]], dict[str, Any]]


# ----------------------------------------------------------------------------- processes


def worker_env() -> dict[str, str]:
    """The environment of every worker: the same thread count everywhere, no tokenizer threads."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(THREADS),
        MKL_NUM_THREADS=str(THREADS),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONWARNINGS="ignore",
    )
    return env


def setup_worker() -> None:
    """Called first in each worker: fix torch's thread count before any work."""
    import torch

    torch.set_num_threads(THREADS)


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait: float = 60.0, threshold: float = 0.1) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` of the CPUs.

    The machine is shared; a run that starts while another job saturates the cores measures the
    other job. Returns the busy fraction seen last.
    """
    deadline = time.monotonic() + max_wait
    while True:
        fraction = busy_share(1.0)
        if fraction < threshold or time.monotonic() > deadline:
            return fraction


def run_worker(script: str | Path, name: str, args: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Run ``script --worker name`` in a fresh interpreter and return the dict it reported.

    Adds ``foreign_cpu``: the share of the machine's CPU time that other processes used while the
    worker ran (0 = the machine was ours; 0.5 on 2 cores = one core taken by someone else).
    """
    cmd = [sys.executable, str(script), "--worker", name, "--args", json.dumps(args)]
    busy0, total0 = cpu_seconds()
    own0 = _children_cpu()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=worker_env(), timeout=timeout, cwd=REPO, check=False
    )
    busy1, total1 = cpu_seconds()
    own = _children_cpu() - own0
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"worker {name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["foreign_cpu"] = max(0.0, (busy1 - busy0) - own) / max(total1 - total0, 1e-9)
    return result


NOISY = 0.15  # a run during which other processes took > 15% of the machine is noisy


def alternate(
    script: str | Path,
    variants: dict[str, dict[str, Any]],
    rounds: int,
    log: Callable[[str], None] | None = None,
    extra_rounds: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Run every variant once per round, in the given order, each in its own fresh process.

    A variant runs the worker of its own name, or the one its args name under ``"worker"``.
    The machine is shared: a round in which any run was noisy (other processes took more than
    ``NOISY`` of the CPUs, see ``foreign_cpu``) is repeated, up to ``extra_rounds`` times
    (default ``rounds - 1``). The ``rounds`` least noisy rounds are returned, in order.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    extra = rounds - 1 if extra_rounds is None else extra_rounds
    done: list[dict[str, dict[str, Any]]] = []
    while True:
        clean = [r for r in done if _noise(r) <= NOISY]
        if len(clean) >= rounds or len(done) >= rounds + extra:
            break
        round_results = {}
        for name, args in variants.items():
            wait_for_quiet()
            start = time.perf_counter()
            result = run_worker(script, args.get("worker", name), args)
            round_results[name] = result
            log(f"  round {len(done) + 1} {name}: {_brief(result)} ({time.perf_counter() - start:.0f}s)")
        done.append(round_results)
        if _noise(round_results) > NOISY:
            log(
                f"  round {len(done)} was noisy (foreign cpu {_noise(round_results):.2f}); it may be repeated"
            )
    kept = sorted(sorted(range(len(done)), key=lambda i: _noise(done[i]))[:rounds])
    if any(_noise(done[i]) > NOISY for i in kept):
        log(f"  warning: noisy rounds kept (foreign cpu > {NOISY}); ratios are less reliable")
    return {name: [done[i][name] for i in kept] for name in variants}


def _noise(round_results: dict[str, dict[str, Any]]) -> float:
    return max(r["foreign_cpu"] for r in round_results.values())


def _brief(result: dict[str, Any]) -> str:
    shown = [f"{k}={v:.4g}" for k, v in result.items() if isinstance(v, float)][:4]
    return " ".join([*shown, f"foreign_cpu={result['foreign_cpu']:.2f}"])


def worker_main(workers: dict[str, Worker], parent: Callable[[argparse.Namespace], None]) -> None:
    """Entry point of a benchmark script: ``--worker NAME --args JSON`` runs one variant."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    parser.add_argument("--quick", action="store_true", help="a short sanity run")
    parser.add_argument("--rounds", type=int, default=None, help="override the number of A/B rounds")
    parser.add_argument("--worker", choices=sorted(workers), help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        setup_worker()
        result = workers[ns.worker](json.loads(ns.args))
        result.setdefault("peak_rss_mb", peak_rss_mb())
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    parent(ns)


# ----------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def paired_ratios(results: dict[str, list[dict[str, Any]]], num: str, den: str, key: str) -> list[float]:
    """``results[num][i][key] / results[den][i][key]`` for each round i (same-round pairs)."""
    return [a[key] / b[key] for a, b in zip(results[num], results[den], strict=True)]


def best_matmul_flops(sizes: Sequence[int] = (2048, 3072, 4096), repeats: int = 3) -> float:
    """This machine's fp32 matmul peak right now: the best FLOP/s of square ``torch.mm`` products."""
    import torch

    best = 0.0
    for n in sizes:
        a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=out)  # first call allocates and warms up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


# ----------------------------------------------------------------------------- FLOP counting


@dataclass(frozen=True)
class FlopModel:
    """Parameter counts of a BERT-like encoder as FLOP counting needs them.

    ``per_token``: the transformer layers' parameters (every token goes through them);
    ``per_sequence``: what runs once per sequence ([CLS] pooler and task head);
    embeddings are lookups and are not counted.
    """

    per_token: int
    per_sequence: int
    hidden: int
    layers: int

    def flops(self, lengths: Sequence[int], train: bool) -> float:
        """Matmul FLOPs over sequences of these real (non-pad) lengths.

        Forward: 2·params per token + attention 4·L²·d per layer (QKᵀ and AV); a training step
        (forward + backward) is three times that.
        """
        tokens = float(sum(lengths))
        squares = float(sum(int(n) * int(n) for n in lengths))
        forward = 2 * self.per_token * tokens + 2 * self.per_sequence * len(lengths)
        forward += 4 * squares * self.hidden * self.layers
        return 3 * forward if train else forward


def flop_model(model: Any) -> FlopModel:
    """Count a :class:`bam.model.BamModel`'s (or any ``*ForSequenceClassification``'s) parameters."""
    per_token = per_sequence = 0
    for name, param in model.named_parameters():
        if "embeddings" in name:
            continue
        if ".layer." in name:
            per_token += param.numel()
        else:  # pooler, classifier / task heads
            per_sequence += param.numel()
    config = model.config if hasattr(model, "config") else model.encoder.config
    return FlopModel(per_token, per_sequence, config.hidden_size, config.num_hidden_layers)


# ----------------------------------------------------------------------------- bam's own loop


@dataclass
class StepLog:
    """What a timed run of ``bam.train.loop.train`` did, step by step."""

    starts: list[float] = field(default_factory=list)  # perf_counter at each _batch_loss call
    lengths: list[list[int]] = field(default_factory=list)  # real lengths of each batch's rows
    end: float = 0.0  # perf_counter when the loop finished its last step (the final evaluation)
    loop_examples_per_second: float = 0.0  # the loop's own figure (includes warm-up steps)
    flop_model: FlopModel | None = None

    def window(self, warmup: int) -> tuple[float, list[list[int]]]:
        """Seconds and batches of the steps after ``warmup`` (to the end of the last step)."""
        return self.end - self.starts[warmup], self.lengths[warmup:]


def timed_bam_train(config: Any, output_dir: Path, cache_dir: Path) -> StepLog:
    """Run bam's real ``train()`` and record when each step starts and which rows it holds.

    Only the loop's edges are patched: dev evaluation is skipped (it is not training and would
    dominate a 30-step run). Everything a step does — collate, forward, losses, backward,
    clipping, AdamW, schedule, logging — runs unchanged; the window ends when the loop reaches its
    final evaluation, so saving the model afterwards is not timed.
    """
    import bam.train.loop as loop

    log = StepLog()
    original = loop._batch_loss

    def batch_loss(model, data, task_ids, rows, *args, **kwargs):  # type: ignore[no-untyped-def]
        log.starts.append(time.perf_counter())
        if log.flop_model is None:
            log.flop_model = flop_model(model)
        log.lengths.append([int(data[t].features.lengths[r]) for t, r in zip(task_ids, rows, strict=True)])
        return original(model, data, task_ids, rows, *args, **kwargs)

    def evaluate(*args, **kwargs):  # type: ignore[no-untyped-def]
        log.end = time.perf_counter()
        return {}

    loop._batch_loss = batch_loss
    loop.evaluate = evaluate
    loop.load_eval_splits = lambda *args, **kwargs: []
    result = loop.train(config, output_dir, quiet=True, cache_dir=cache_dir)
    log.loop_examples_per_second = result.examples_per_second
    return log


def epochs_for_steps(steps: int, steps_per_epoch: int) -> float:
    """The ``epochs`` value that makes bam's loop run exactly ``steps`` steps (ceil-safe)."""
    return (steps - 0.5) / steps_per_epoch


# ----------------------------------------------------------------------------- data


def glue_mix(tasks: Sequence[str], per_task: int) -> list[Any]:
    """The same fixed rows bam's ``train_cap`` keeps: ``per_task`` training rows of each task."""
    from bam.data.prepare import training_examples
    from bam.tasks import get_task

    return [training_examples(get_task(name), None, per_task) for name in tasks]


WORDS = (
    "the a of to and in is was for on that with as by at from it an be this which or are "
    "film movie story good bad great plot actor scene music time people world life man woman "
    "never always very more most some many little long short new old first last best worst"
)


def synthetic_texts(n: int, seed: int, min_words: int = 8, max_words: int = 40) -> list[str]:
    """Deterministic word salad with varied lengths (a fixed vocabulary of real English words)."""
    import numpy as np

    words = WORDS.split()
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_words, max_words + 1, size=n)
    picks = rng.integers(0, len(words), size=int(sizes.sum()))
    out, pos = [], 0
    for size in sizes:
        out.append(" ".join(words[i] for i in picks[pos : pos + size]))
        pos += size
    return out


def write_custom_task(folder: Path, name: str, texts: Sequence[str], labels: Sequence[int]) -> Path:
    """A single-sentence two-label custom task (train split only) and its YAML file."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.tsv", "w", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\n")
        for text, label in zip(texts, labels, strict=True):
            handle.write(f"{text}\t{label}\n")
    yaml_path = folder / "task.yaml"
    yaml_path.write_text(
        f"name: {name}\nformat: tsv\nfiles:\n  train: train.tsv\n"
        "text_columns: sentence\nlabel_column: label\nlabels: ['0', '1']\n",
        encoding="utf-8",
    )
    return yaml_path


# ----------------------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table (numbers to 4 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def ratio_line(label: str, ratios: Sequence[float], target: float | None) -> str:
    """``label per round [..] median x (target ≥ t)`` for the log (no target: for information)."""
    shown = ", ".join(f"{x:.3f}" for x in ratios)
    goal = f"target ≥ {target:g}" if target is not None else "no target"
    return f"{label} per round [{shown}] median {median(ratios):.3f} ({goal})"


def machine() -> str:

    return f"{cpu_name()}, {os.cpu_count()} cores, {THREADS} torch threads"


def final_json(name: str, values: dict[str, Any]) -> None:
    """The last line of every benchmark: its ratios (and verdicts) as one JSON object."""
    print(json.dumps({"benchmark": name, **values}, sort_keys=False), flush=True)
