"""The CoLA boost at ×1.5 and ×2 beside BAM and Single, seed by seed, from the committed results.

Run from anywhere: ``python scripts/boost_table.py``. It reads only results.json files
kept here: the main table's seeds (Single, BAM) and the boost runs under ablations/ (each its own
``bam run`` folder, so they are not merged: seeds 1 and 2 ran with ``train.dropout_rng=torch``,
seeds 4 and 5 without). A boost is compared with BAM and Single on the seeds it ran on only.
Seeds 3, 6 and 7 of the main table trained on an H200 and H100s; their boost runs trained Single
and BAM again on the CPU beside the boost, and those are the ones it is compared with.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "results" / "glue5-cpu"  # the runs it tabulates
TASKS = ["cola", "sst2", "mrpc", "stsb", "rte", "avg"]
RULE = "|---|---:|---:|---:|---:|---:|---:|"
BOOSTS = {  # method → the folder holding each seed's run of it
    "bam_cola15": {seed: f"ablations/cola-boost15/seed{seed}" for seed in (1, 2, 3, 4, 5, 6, 7)},
    "bam_cola2": {1: "ablations/cola-boost-seed1", 4: "ablations/cola-boost-seed4", 5: "ablations/seed5"},
}
# seed → where its Single and BAM are, if not "." (seeds 3, 6 and 7 were trained again on the CPU)
BASELINES = {seed: f"ablations/cola-boost15/seed{seed}" for seed in (3, 6, 7)}


def _scores(folder: str, seed: int, method: str) -> dict[str, float]:
    path = HERE / folder / "seeds" / str(seed) / "results.json"
    return json.loads(path.read_text(encoding="utf-8"))["methods"][method]


def _row(name: str, scores: dict[str, float], sign: str = "") -> str:
    return f"| {name} | " + " | ".join(f"{scores[t]:{sign}.2f}" for t in TASKS) + " |"


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {t: statistics.median(run[t] for run in runs) for t in TASKS}


def _at_or_above(scores: dict[str, float], single: dict[str, float]) -> list[str]:
    return [t for t in TASKS[:-1] if scores[t] >= single[t]]


def main() -> None:
    seeds = sorted({seed for folders in BOOSTS.values() for seed in folders})
    main_table = {
        seed: {m: _scores(BASELINES.get(seed, "."), seed, m) for m in ("single", "bam")} for seed in seeds
    }
    boosted = {
        method: {seed: _scores(f, seed, method) for seed, f in folders.items()}
        for method, folders in BOOSTS.items()
    }
    for seed in seeds:
        where = " (CPU, teachers and BAM trained again)" if seed in BASELINES else ""
        print(f"\n| seed {seed}{where} | CoLA | SST-2 | MRPC | STS-B | RTE | avg |\n{RULE}")
        print(_row("Single", main_table[seed]["single"]))
        print(_row("BAM", main_table[seed]["bam"]))
        for method, runs in boosted.items():
            if seed in runs:
                print(_row(f"`{method}`", runs[seed]))
    print("\n| gain over BAM, median of the method's seeds | CoLA | SST-2 | MRPC | STS-B | RTE | avg |")
    print(RULE)
    for method, runs in boosted.items():
        gains = [{t: runs[s][t] - main_table[s]["bam"][t] for t in TASKS} for s in runs]
        print(_row(f"`{method}` (seeds {', '.join(map(str, runs))})", _median(gains), sign="+"))
    for method, runs in boosted.items():
        listed = ", ".join(map(str, runs))
        mine = _median(list(runs.values()))
        single, bam = (_median([main_table[s][base] for s in runs]) for base in ("single", "bam"))
        print(f"\n| median of seeds {listed} | CoLA | SST-2 | MRPC | STS-B | RTE | avg |\n{RULE}")
        print("\n".join([_row("Single", single), _row("BAM", bam), _row(f"`{method}`", mine)]))
        for name, base in (("BAM", "bam"), ("Single", "single")):
            by_seed = ", ".join(f"{runs[s]['avg'] - main_table[s][base]['avg']:+.2f}" for s in runs)
            print(f"- {method} − {name} on the average, seeds {listed}: {by_seed}")
        counts = ", ".join(str(len(_at_or_above(runs[s], main_table[s]["single"]))) for s in runs)
        above = _at_or_above(mine, single)
        print(f"- tasks at or above Single, seed by seed: {counts}")
        gains = f"{mine['avg'] - single['avg']:+.2f} over Single, {mine['avg'] - bam['avg']:+.2f} over BAM"
        print(f"- on the medians: {gains}; at or above Single on {len(above)} of 5 ({', '.join(above)})")


if __name__ == "__main__":
    main()
