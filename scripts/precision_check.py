"""Issue #29's quality check: do a run's bf16 seeds score like its fp32 seeds?

Reads ``seeds/<n>/results.json`` of two ``bam run`` output folders (or committed results folders)
and, over the seeds both hold, compares each method's median average and each task's median.
The targets: every method's median average within 0.5 point of fp32's, and no task's median
further from fp32's than that method's fp32 seed spread on the task (max − min over every fp32
seed found: how far a seed alone moves the score). Prints a Markdown table and, last, one JSON line:

    python scripts/precision_check.py results/glue5-cpu results/glue5-cpu/bf16 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

from bam.tasks import GLUE_TASKS

AVERAGE_TOLERANCE = 0.5  # points of the method's average


def seed_scores(folder: Path) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {method: {task or "avg": score}}}`` of every ``seeds/<n>/results.json`` in ``folder``."""
    found = {}
    for path in sorted((folder / "seeds").glob("*/results.json")):
        try:
            record = json.loads(path.read_text())
            found[int(record["seed"])] = record["methods"]
        except (ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"{path}: not a bam run's seed results ({err})") from None
    if not found:
        raise SystemExit(f"{folder}: no seeds/<n>/results.json")
    return found


def compare(fp32: dict[int, Any], bf16: dict[int, Any], seeds: list[int]) -> tuple[list[str], dict[str, Any]]:
    """Table lines and the summary of the check over ``seeds`` (those both folders hold)."""
    methods = [m for m in bf16[seeds[0]] if all(m in fp32[s] and m in bf16[s] for s in seeds)]
    order = list(GLUE_TASKS)  # the tables' order; a task GLUE does not list goes last
    tasks = sorted((t for t in bf16[seeds[0]][methods[0]] if t != "avg"),
                   key=lambda t: order.index(t) if t in order else len(order))  # fmt: skip
    spread = {m: {t: max(v) - min(v) for t in tasks if (v := [fp32[s][m][t] for s in fp32 if m in fp32[s]])}
              for m in methods}  # fmt: skip
    lines = [f"| method | {' | '.join(tasks)} | avg |", "|---|" + "---:|" * (len(tasks) + 1)]
    summary: dict[str, Any] = {"seeds": seeds, "methods": {}, "fp32_seed_spread": spread}
    for method in methods:
        cells, worst = [], {}
        for key in [*tasks, "avg"]:
            a = median(fp32[s][method][key] for s in seeds)
            b = median(bf16[s][method][key] for s in seeds)
            cells.append(f"{a:.2f} → {b:.2f} ({b - a:+.2f})")
            worst[key] = b - a
        within_spread = all(abs(worst[t]) <= spread[method][t] for t in tasks)
        summary["methods"][method] = {
            "avg_fp32": median(fp32[s][method]["avg"] for s in seeds),
            "avg_bf16": median(bf16[s][method]["avg"] for s in seeds),
            "avg_within_0.5": abs(worst["avg"]) <= AVERAGE_TOLERANCE,
            "tasks_within_fp32_spread": within_spread,
            "task_deltas": {t: worst[t] for t in tasks},
        }
        lines.append(f"| {method} | {' | '.join(cells)} |")
        lines.append(
            f"| {method}: fp32 seed spread | "
            + " | ".join(f"{spread[method][t]:.2f}" for t in tasks)
            + " | |"
        )
    summary["passed"] = all(
        m["avg_within_0.5"] and m["tasks_within_fp32_spread"] for m in summary["methods"].values()
    )
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=Path, help="the fp32 run's folder (holding seeds/<n>/results.json)")
    parser.add_argument("bf16", type=Path, help="the bf16 run's folder")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the seeds the check needs")
    args = parser.parse_args()
    fp32, bf16 = seed_scores(args.fp32), seed_scores(args.bf16)
    present = [s for s in args.seeds if s in fp32 and s in bf16]
    if not present:
        sys.exit(f"none of seeds {args.seeds} is in both {args.fp32} and {args.bf16}")
    lines, summary = compare(fp32, bf16, present)
    summary["complete"] = present == args.seeds  # the check is done only when every seed asked for is
    summary["passed"] = summary["passed"] and summary["complete"]
    print(f"Medians over seeds {', '.join(map(str, present))}: fp32 → bf16 (difference).\n")
    print("\n".join(lines))
    if not summary["complete"]:
        missing = sorted(set(args.seeds) - set(present))
        print(f"\nnot complete: seed(s) {', '.join(map(str, missing))} missing from one of the folders")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
