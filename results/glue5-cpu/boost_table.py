"""The CoLA boost at ×1.5 and ×2 beside BAM and Single, seed by seed, from the committed results.

Run from this folder: ``python boost_table.py``. It reads only results.json files kept here: the
main table's seeds (Single, BAM) and the boost runs under ablations/ (each its own ``bam run``
folder, so they are not merged: seed 1 ran with ``train.dropout_rng=torch``, seeds 4 and 5 without).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent
TASKS = ["cola", "sst2", "mrpc", "stsb", "rte", "avg"]
SEEDS = [1, 4, 5]
RULE = "|---|---:|---:|---:|---:|---:|---:|"
BOOSTS = {  # method → the folder holding each seed's run of it
    "bam_cola15": {seed: f"ablations/cola-boost15/seed{seed}" for seed in SEEDS},
    "bam_cola2": {1: "ablations/cola-boost-seed1", 4: "ablations/cola-boost-seed4", 5: "ablations/seed5"},
}


def _scores(folder: str, seed: int, method: str) -> dict[str, float]:
    path = HERE / folder / "seeds" / str(seed) / "results.json"
    return json.loads(path.read_text(encoding="utf-8"))["methods"][method]


def _row(name: str, scores: dict[str, float], sign: str = "") -> str:
    return f"| {name} | " + " | ".join(f"{scores[t]:{sign}.2f}" for t in TASKS) + " |"


def main() -> None:
    gains: dict[str, list[dict[str, float]]] = {method: [] for method in BOOSTS}
    for seed in SEEDS:
        print(f"\n| seed {seed} | CoLA | SST-2 | MRPC | STS-B | RTE | avg |\n{RULE}")
        main_table = {m: _scores(".", seed, m) for m in ("single", "bam")}
        print(_row("Single", main_table["single"]))
        print(_row("BAM", main_table["bam"]))
        for method, folders in BOOSTS.items():
            boosted = _scores(folders[seed], seed, method)
            print(_row(f"`{method}`", boosted))
            gains[method].append({t: boosted[t] - main_table["bam"][t] for t in TASKS})
    print("\n| gain over BAM, median of seeds 1, 4, 5 | CoLA | SST-2 | MRPC | STS-B | RTE | avg |")
    print(RULE)
    for method, per_seed in gains.items():
        medians = {t: statistics.median(g[t] for g in per_seed) for t in TASKS}
        print(_row(f"`{method}`", medians, sign="+"))
    for method, per_seed in gains.items():
        by_seed = ", ".join(f"{g['avg']:+.2f}" for g in per_seed)
        print(f"\n{method} − BAM on the average, seeds {SEEDS}: {by_seed}")


if __name__ == "__main__":
    main()
