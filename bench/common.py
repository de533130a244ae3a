"""Shared helpers for bam's benchmarks: fresh-process alternation, timing, FLOP counts, tables.

Every benchmark compares variants that each run in a fresh subprocess (``--worker NAME``), in the
order A B A B … so that neither side profits from a warm cache or suffers from a noisy neighbour
more than the other; ratios are taken per round and their median is reported. The machine is
shared, so each run records how much CPU other processes took meanwhile, and noisy rounds are
repeated. A worker prints one ``BENCH_RESULT {json}`` line; the parent prints a table and, last,
one JSON line of ratios.

``--check`` (what CI runs): the same parent, workers and JSON line on a tiny random encoder and a
few rows, one round, no waiting for a quiet machine; it exits non-zero if anything fails. So a
rename that breaks a benchmark breaks CI, while the full runs stay for a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bam.cpu.machine import busy_share, cpu_name, cpu_seconds  # cpu_name: as train_done.json

THREADS = 2
RESULT_PREFIX = "BENCH_RESULT "
REPO = Path(__file__).resolve().parent.parent
# The --check encoder: tests/helpers.TINY's shape on the packaged MiniLM-L6's vocabulary, random weights.
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2}

Worker = Callable[[dict[str, Any]], dict[str, Any]]

_MODE = {"check": False}  # set by worker_main from --check, in the parent and in every worker


def checking() -> bool:
    """Whether this is a ``--check`` run (tiny model, one round, no waiting for a quiet machine)."""
    return _MODE["check"]


def encoder_settings(check: bool) -> dict[str, Any]:
    """``TrainConfig`` keys of the encoder a benchmark trains: MiniLM-L6, or the tiny random one."""
    if check:
        return {"model": "minilm-l6", "random_init": True, "encoder_overrides": dict(TINY)}
    return {"model": "minilm-l6", "random_init": False, "encoder_overrides": {}}


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
    cmd += ["--check"] if checking() else []
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
    max_wait: float = 60.0,
) -> dict[str, list[dict[str, Any]]]:
    """Run every variant once per round, in the given order, each in its own fresh process.

    A variant runs the worker of its own name, or the one its args name under ``"worker"``.
    The machine is shared: a round in which any run was noisy (other processes took more than
    ``NOISY`` of the CPUs, see ``foreign_cpu``) is repeated, up to ``extra_rounds`` times
    (default ``rounds - 1``); before each run it waits up to ``max_wait`` s for a quiet machine.
    The ``rounds`` least noisy rounds are returned, in order. Under ``--check`` nothing waits for a
    quiet machine and nothing is repeated: it proves the code runs.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    extra = 0 if checking() else rounds - 1 if extra_rounds is None else extra_rounds
    done: list[dict[str, dict[str, Any]]] = []
    while True:
        clean = [r for r in done if _noise(r) <= NOISY]
        if len(clean) >= rounds or len(done) >= rounds + extra:
            break
        round_results = {}
        for name, args in variants.items():
            if not checking():
                wait_for_quiet(max_wait)
            start = time.perf_counter()
            result = run_worker(script, args.get("worker", name), args)
            round_results[name] = result
            log(f"  round {len(done) + 1} {name}: {_brief(result)} ({time.perf_counter() - start:.0f}s)")
        done.append(round_results)
        if _noise(round_results) > NOISY and not checking():
            log(
                f"  round {len(done)} was noisy (foreign cpu {_noise(round_results):.2f}); it may be repeated"
            )
    kept = sorted(sorted(range(len(done)), key=lambda i: _noise(done[i]))[:rounds])
    if any(_noise(done[i]) > NOISY for i in kept) and not checking():
        log(f"  warning: noisy rounds kept (foreign cpu > {NOISY}); ratios are less reliable")
    return {name: [done[i][name] for i in kept] for name in variants}


def _noise(round_results: dict[str, dict[str, Any]]) -> float:
    return max(r["foreign_cpu"] for r in round_results.values())


def _brief(result: dict[str, Any]) -> str:
    skip = ("foreign_cpu", "peak_rss_mb")
    shown = [f"{k}={v:.4g}" for k, v in result.items() if isinstance(v, float) and k not in skip][:4]
    return " ".join([*shown, f"foreign_cpu={result['foreign_cpu']:.2f}"])


def worker_main(workers: dict[str, Worker], parent: Callable[[argparse.Namespace], None]) -> None:
    """Entry point of a benchmark script: ``--worker NAME --args JSON`` runs one variant.

    ``--check`` runs the whole benchmark on its smallest settings (the parent reads ``ns.check``)
    and exits non-zero if a worker fails or the final JSON holds a non-finite number.
    """
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    parser.add_argument("--quick", action="store_true", help="a short sanity run")
    parser.add_argument("--check", action="store_true", help="CI: a tiny random model, one round, seconds")
    parser.add_argument("--rounds", type=int, default=None, help="override the number of A/B rounds")
    parser.add_argument("--worker", choices=sorted(workers), help=argparse.SUPPRESS)
    parser.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    _MODE["check"] = ns.check
    if ns.check and ns.rounds is None:
        ns.rounds = 1
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


def ratios_to_best(
    results: dict[str, list[dict[str, Any]]], num: str, peers: Sequence[str], key: str
) -> tuple[list[float], list[str]]:
    """Per round, ``num``'s ``key`` over the best of ``peers`` in that same round, and which peer
    it was: each side at its best configuration, the faster peer configuration counted."""
    ratios, winners = [], []
    for i, mine in enumerate(results[num]):
        best = max(peers, key=lambda name: results[name][i][key])
        ratios.append(mine[key] / results[best][i][key])
        winners.append(best)
    return ratios, winners


def best_matmul_flops(
    sizes: Sequence[int] | None = None, repeats: int = 3, dtype: str = "fp32", device: str = "cpu"
) -> float:
    """This machine's matmul peak right now in ``dtype`` (fp32, bf16 or fp16): the best FLOP/s of
    square ``torch.mm`` products (2048–4096 on CPU, 4096–8192 on a GPU; 256–512 under --check)."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if sizes is None:
        sizes = (256, 512) if checking() else (4096, 8192) if device != "cpu" else (2048, 3072, 4096)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(kind)
        b = torch.randn(n, n, device=device).to(kind)
        out = torch.empty(n, n, device=device, dtype=kind)
        torch.mm(a, b, out=out)  # first call allocates and warms up
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            sync()
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def matmul_peaks(device: str = "cpu") -> dict[str, float]:
    """The fp32 and the bf16 matmul peak, measured now in this process (FLOP/s)."""
    return {dtype: best_matmul_flops(dtype=dtype, device=device) for dtype in ("fp32", "bf16")}


def max_peaks(*measured: dict[str, float]) -> dict[str, float]:
    """Per dtype, the higher of peaks measured before and after the timed work."""
    return {dtype: max(m[dtype] for m in measured) for dtype in measured[0]}


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


def _non_finite(value: Any, path: str = "") -> list[str]:
    """The keys (dotted) of every NaN or infinite number in a JSON-like value."""
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in _non_finite(item, f"{path}{key}.")]
    if isinstance(value, list | tuple):
        return [bad for i, item in enumerate(value) for bad in _non_finite(item, f"{path}{i}.")]
    if isinstance(value, float) and not math.isfinite(value):
        return [path.rstrip(".")]
    return []


def final_json(name: str, values: dict[str, Any]) -> None:
    """The last line of every benchmark: its ratios (and verdicts) as one JSON object.

    A NaN or infinite figure means a side measured nothing: the line is still printed, then the
    benchmark exits with status 1 (so ``--check`` fails in CI)."""
    record = {"benchmark": name, **({"check": True} if checking() else {}), **values}
    print(json.dumps(record, sort_keys=False), flush=True)
    bad = _non_finite(values)
    if bad:
        print(f"{name}: non-finite figures: {', '.join(bad)}", file=sys.stderr, flush=True)
        sys.exit(1)
