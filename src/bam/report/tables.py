"""The comparison table: results.json → a markdown report and a plain-text table for the terminal."""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bam.errors import BamError
from bam.extras import MissingExtra
from bam.fileio import atomic_write_text, read_json_object
from bam.report.names import label, method_labels, ordered, task_columns
from bam.tasks import BUILTIN_TASKS


def _label(task: str) -> str:
    return BUILTIN_TASKS[task].display if task in BUILTIN_TASKS else task


def _cell(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


Labels = Mapping[str, str] | None  # method -> its label (bam.report.names.method_labels)


def format_table(
    methods: dict[str, dict[str, float]], markdown: bool = True, reorder: bool = True, labels: Labels = None
) -> str:
    """Methods as rows (by ``labels``), tasks as columns, then BAM's average."""
    methods = ordered(methods) if reorder else methods
    tasks = task_columns(methods)
    header = ["method", *[_label(t) for t in tasks], "avg"]
    rows = [
        [label(m, labels), *[_cell(s.get(t)) for t in tasks], _cell(s.get("avg"))] for m, s in methods.items()
    ]
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
        )

    return "\n".join([fmt(header), *[fmt(r) for r in rows]])


def seed_statistics(per_seed: dict[str, dict[str, dict[str, float]]], labels: Labels = None) -> str:
    """Spread of each method's average over seeds, and the paper's Mann–Whitney U test against BAM
    in both one-sided directions: "is BAM higher?" for the paper's rows, "is the method higher?"
    for the rows past the paper, which are meant to beat BAM."""
    from scipy.stats import mannwhitneyu

    runs = list(per_seed.values())
    averages = {m: [run[m]["avg"] for run in runs] for m in ordered(runs[0])}
    lines = [
        "## Spread over seeds and significance",
        "",
        "| method | median avg | min | max | BAM > method: U | p (one-sided) | method > BAM: p |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, values in averages.items():
        test = ("–", "–", "–")
        if "bam" in averages and method != "bam":
            bam_higher = mannwhitneyu(averages["bam"], values, alternative="greater")
            method_higher = mannwhitneyu(values, averages["bam"], alternative="greater")
            test = (f"{bam_higher.statistic:.1f}", f"{bam_higher.pvalue:.3f}", f"{method_higher.pvalue:.3f}")
        median, spread = statistics.median(values), f"{min(values):.2f} | {max(values):.2f}"
        lines.append(f"| {label(method, labels)} | {median:.2f} | {spread} | {' | '.join(test)} |")
    return "\n".join([*lines, "", _task_ranges(runs, labels)])


def _task_ranges(runs: list[dict[str, dict[str, float]]], labels: Labels) -> str:
    """Lowest and highest score over seeds of every method × task: how far one seed can mislead."""
    methods = ordered(runs[0])
    tasks = [*task_columns(methods), "avg"]
    lines = [
        "Range over seeds (lowest–highest):",
        "",
        "| method | " + " | ".join(_label(t) for t in tasks) + " |",
        "|---|" + "---:|" * len(tasks),
    ]
    for method in methods:
        cells = []
        for task in tasks:
            values = [run[method][task] for run in runs if task in run.get(method, {})]
            cells.append(f"{min(values):.2f}–{max(values):.2f}" if values else "–")
        lines.append(f"| {label(method, labels)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bam_versus(methods: dict[str, dict[str, float]], labels: Labels = None) -> str:
    """BAM's lead over every other method: on the average, and the tasks where BAM is not behind."""
    if "bam" not in methods:
        return ""
    bam = methods["bam"]
    tasks = [t for t in task_columns(methods) if t in bam]
    lines = [
        "## BAM against each method",
        "",
        "| method | BAM avg − method avg | tasks where BAM ≥ method |",
        "|---|---:|---|",
    ]
    for method, scores in ordered(methods).items():
        if method == "bam":
            continue
        kept = [_label(t) for t in tasks if t in scores and bam[t] >= scores[t]]
        lines.append(
            f"| {label(method, labels)} | {bam['avg'] - scores['avg']:+.2f} | "
            f"{len(kept)} of {len(tasks)}: {', '.join(kept) or 'none'} |"
        )
    return "\n".join(lines)


def read_results(path: Path, whole_run: bool = False) -> dict[str, Any]:
    """A results.json, checked for what the table (and with ``whole_run`` the report) reads."""
    results = read_json_object(path, "missing (not a finished bam run)")
    methods = results.get("methods")
    if not isinstance(methods, dict) or not all(
        isinstance(scores, dict) and all(isinstance(v, int | float) for v in scores.values())
        for scores in methods.values()
    ):
        raise BamError(f"{path}: 'methods' must map each method to its scores (not a bam results file)")
    if whole_run:
        _check_details(path, results.get("details"))
        lacking = [method for method, scores in methods.items() if "avg" not in scores]
        if lacking:  # the report compares methods by it
            raise BamError(f"{path}: method {lacking[0]!r} has no 'avg' score (not a bam results file)")
    return results


def _check_details(path: Path, details: Any) -> None:
    """What the report reads of ``details``, each field by its name: never a traceback."""
    wanted = {"seeds": list, "per_seed": dict, "stage_seconds": dict, "config": dict}
    for key, kind in wanted.items():
        if not isinstance(details, dict) or not isinstance(details.get(key), kind):
            wrong = f"details.{key} is missing or not a {kind.__name__}"
            raise BamError(f"{path}: {wrong}; --compare-only prints its table")
    assert isinstance(details, dict)
    problems: dict[str, bool] = {
        "details.seeds": not details["seeds"],
        "details.stage_seconds": not all(
            isinstance(v, int | float) for v in details["stage_seconds"].values()
        ),
        "details.wall_seconds": "wall_seconds" in details
        and not isinstance(details["wall_seconds"], int | float),
        "details.merged_from": "merged_from" in details and not isinstance(details["merged_from"], dict),
        "details.stages": "stages" in details and not _stage_lists(details["stages"]),
        "details.stage_machines": "stage_machines" in details
        and not (
            isinstance(details["stage_machines"], dict)
            and all(isinstance(v, str) for v in details["stage_machines"].values())
        ),
    }
    for key, bad in problems.items():
        if bad:
            raise BamError(
                f"{path}: {key} is empty or not of the right type; --compare-only prints its table"
            )


def teacher_check(results: dict[str, Any], markdown: bool = True) -> str:
    """Each teacher against the constant prediction (``details.baselines``; runs from before it was
    recorded have none: ""), flagging one that does not clear it by ``details.teacher_margin``."""
    details = results.get("details") or {}
    baselines, single = details.get("baselines"), results["methods"].get("single")
    if not isinstance(baselines, dict) or not baselines or not single:
        return ""
    margin = float(details.get("teacher_margin", 0.0))
    rows, flagged = [], []
    for task in task_columns({"baselines": baselines}):  # the tables' order, whatever the JSON kept
        floor = baselines[task]
        if task in single:
            lead = single[task] - floor
            verdict = "ok" if lead >= margin else f"BELOW: less than {margin:g} points above the constant"
            flagged += [] if lead >= margin else [_label(task)]
            rows.append((_label(task), floor, single[task], lead, verdict))
    if markdown:
        lines = ["| task | constant prediction | teacher (Single) | lead | |", "|---|---:|---:|---:|---|"]
        lines += [f"| {t} | {f:.2f} | {s:.2f} | {d:+.2f} | {v} |" for t, f, s, d, v in rows]
    else:
        lines = [f"{t:<6} constant {f:6.2f}  teacher {s:6.2f}  lead {d:+6.2f}  {v}" for t, f, s, d, v in rows]
    if flagged:
        lines += [
            "",
            f"Teacher(s) of {', '.join(flagged)} at or near chance: distilling from a teacher "
            "at chance teaches nothing, so BAM's targets there are noise.",
        ]
    return "\n".join(lines)


def where_seeds_ran(details: dict[str, Any]) -> list[str]:
    """A line per seed (per machine, where a seed's stages ran on several): the precision each
    ran in, why, and the hardware. Seeds merged from different machines may differ, and a
    reader of the medians should know. None where the results predate the record."""
    machines = details.get("stage_machines")
    if not isinstance(machines, dict):
        return []
    lines = []
    for seed in details["seeds"]:
        stages = details.get("stages", {}).get(str(seed), {})
        names = {Path(p).name for paths in stages.values() for p in paths}
        counts = Counter(machines.get(name, "not recorded (stage folders not at hand)") for name in names)
        for line, n in counts.most_common():
            share = f"{n} stages" if n == len(names) else f"{n} of {len(names)} stages"
            lines.append(f"- seed {seed} ({share}): {line}")
    return lines


def _stage_lists(stages: Any) -> bool:
    """Whether ``stages`` maps each seed to each method's list of stage paths, as results.json keeps them."""
    return isinstance(stages, dict) and all(
        isinstance(methods, dict)
        and all(
            isinstance(paths, list) and all(isinstance(p, str) for p in paths) for paths in methods.values()
        )
        for methods in stages.values()
    )


def write_report(root: Path, results: dict[str, Any]) -> Path:
    """``report.md``: the table (medians over seeds), per-seed tables, plots, and every setting used."""
    from bam.report.plots import write_plots  # matplotlib only when a report is written

    details = results["details"]
    seeds = details["seeds"]
    labels = method_labels(details["config"])
    description = str(details["config"].get("description") or "").strip()
    parts = ["# bam run report", "", *([description, ""] if description else [])]
    parts += [
        f"Dev-set scores in percent (CoLA: Matthews corr.; STS-B: Spearman; others: accuracy); "
        f"`avg` is BAM's average over the tasks run (WNLI excluded). "
        f"{'Median over seeds ' + ', '.join(map(str, seeds)) if len(seeds) > 1 else f'Seed {seeds[0]}'}.",
        "",
        format_table(results["methods"], labels=labels),
        "",
    ]
    versus = bam_versus(results["methods"], labels)
    parts += [versus, ""] if versus else []
    check = teacher_check(results)
    parts += ["## Teachers against the constant prediction", "", check, ""] if check else []
    if len(seeds) > 1:
        parts += [seed_statistics(details["per_seed"], labels), ""]
        for seed, methods in sorted(details["per_seed"].items(), key=lambda item: int(item[0])):
            parts += [f"## Seed {seed}", "", format_table(methods, labels=labels), ""]
    # in results.json's order (sorted), so a report written from the file reads as the first one
    parts += ["## Wall time per stage", "", "| stage | seconds |", "|---|---:|"]
    parts += [f"| {name} | {secs:.0f} |" for name, secs in sorted(details["stage_seconds"].items())]
    parts += [f"| **all stages** | {sum(details['stage_seconds'].values()):.0f} |"]
    if "wall_seconds" in details:
        parts += [f"| **whole run (this invocation)** | {details['wall_seconds']:.0f} |"]
    parts += [""]
    ran = where_seeds_ran(details)
    parts += ["## Where each seed ran", "", *ran, ""] if ran else []
    if "merged_from" in details:
        parts += ["Merged from separate runs (`bam report --merge-into`):", ""]
        parts += [f"- seed {seed}: `{folder}`" for seed, folder in details["merged_from"].items()]
        parts += [""]
    try:
        plots = [f"![{p.stem}]({p.name})" for p in write_plots(root, results)]
    except MissingExtra as err:  # plots are an extra: the report is written without them, saying why
        plots = [f"No plots: {err}, then `bam report {root}`."]
        logging.getLogger("bam").warning(f"{root / 'report.md'}: written without plots ({err})")
    parts += ["## Plots", "", *plots, ""]
    parts += [
        "## Settings",
        "",
        "```json",
        json.dumps(details["config"], indent=2, sort_keys=True),
        "```",
        "",
    ]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path


def compare_runs(folders: list[Path]) -> str:
    """Several runs side by side: one row per run and method, tasks as columns."""
    rows: dict[str, dict[str, float]] = {}
    for folder in folders:
        results = read_results(folder / "results.json")
        labels = results_labels(results)
        for method, scores in ordered(results["methods"]).items():
            rows[f"{folder.name} · {label(method, labels)}"] = scores
    return format_table(rows, reorder=False)


def results_labels(results: dict[str, Any]) -> dict[str, str]:
    """The method labels of a results.json (:func:`~bam.report.names.method_labels`); none for a
    file without its run's config."""
    details = results.get("details")
    config = details.get("config") if isinstance(details, dict) else None
    return method_labels(config) if isinstance(config, dict) else {}
