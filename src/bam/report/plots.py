"""PNG plots for a run's report: scores per method, dev curves, the λ schedule, sampling shares.

matplotlib is the ``plots`` extra (``pip install 'bam-nlu[plots]'``), imported when a plot is
drawn: without it every function here raises :class:`~bam.extras.MissingExtra`, and
:func:`bam.report.tables.write_report` writes the report without plots, saying why.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bam.config.run import RunConfig
from bam.config.train import build_dataclass
from bam.distill.schedules import lambda_at
from bam.extras import require
from bam.fileio import atomic_write_bytes
from bam.report.names import label, method_labels, ordered, task_columns

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _subplots(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """A new figure drawn to files only (no display), from matplotlib imported on first use."""
    require("plots").use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_scores(
    methods: dict[str, dict[str, float]], path: Path, labels: dict[str, str] | None = None
) -> Path:
    """Grouped bars: one group per task (and the average), one bar per method."""
    methods = ordered(methods)
    columns = [*task_columns(methods), "avg"]
    fig, ax = _subplots((1.6 + 1.3 * len(columns), 3.6))
    width = 0.8 / max(len(methods), 1)
    for i, (method, scores) in enumerate(methods.items()):
        xs = [c + (i - (len(methods) - 1) / 2) * width for c in range(len(columns))]
        ax.bar(xs, [scores.get(c, float("nan")) for c in columns], width, label=label(method, labels))
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("dev score (%)")
    ax.set_title("Dev scores per task and method")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _stage_runs(stage_dirs: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for method, folders in stage_dirs.items():
        for folder in folders:
            done = Path(folder) / "train_done.json"
            if done.is_file():
                runs.setdefault(method, []).append(json.loads(done.read_text()))
    return runs


def _of_seed(seed: str) -> str:
    return f" (seed {seed})" if seed else ""


def plot_dev_curves(stage_dirs: dict[str, list[str]], path: Path, seed: str = "") -> Path | None:
    """Dev score of every task over training, one line per method and task, of one seed's stages
    (None: no stage records at hand)."""
    runs_by_method = _stage_runs(stage_dirs)
    if not any(run.get("history") for runs in runs_by_method.values() for run in runs):
        return None
    fig, ax = _subplots((7, 4))
    for method, runs in runs_by_method.items():
        for run in runs:
            history = run.get("history", [])
            tasks = history[0]["scores"].keys() if history else []
            for task in tasks:
                ax.plot(
                    [h["epoch"] for h in history],
                    [h["scores"][task] for h in history],
                    marker="o",
                    markersize=3,
                    label=f"{method} · {task}",
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev score (%)")
    ax.set_title(f"Dev score during training{_of_seed(seed)}")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def lambda_schedules(run_config: dict[str, Any]) -> dict[str, tuple[str, float, float]]:
    """Each student method's λ schedule, constant and horizon as its stages trained with them:
    resolved through the run config's layers (defaults, ``train``, ``student``, the method), not
    read off the method's own entry, which may leave the schedule to the ``student`` section."""
    run = build_dataclass(RunConfig, run_config, "results.json: details.config")
    schedules = {}
    for method in run.methods:
        if method != "single":
            student = run.student_config(method, run.tasks, run.seeds[0])
            schedules[method] = (student.lambda_schedule, student.lambda_constant, student.lambda_horizon)
    return schedules


def plot_lambda(run_config: dict[str, Any], path: Path, steps: int = 200) -> Path | None:
    """λ (weight on gold labels) over training for every student method (None: no students)."""
    students = lambda_schedules(run_config)
    if not students:
        return None
    fig, ax = _subplots((5, 3))
    for method, (schedule, constant, horizon) in students.items():
        ax.plot(
            [s / steps for s in range(steps + 1)],
            [lambda_at(schedule, s, steps, constant, horizon) for s in range(steps + 1)],
            label=f"{method} ({schedule})",
        )
    ax.set_xlabel("fraction of training")
    ax.set_ylabel("λ (weight on gold)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Teacher-annealing schedule")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_shares(stage_dirs: dict[str, list[str]], path: Path, seed: str = "") -> Path | None:
    """Task sampling shares over training of the first adaptive student (``sampling: adaptive``),
    or else the fixed shares of the first multi-task student."""
    students = _stage_runs({k: v for k, v in stage_dirs.items() if k != "single"})
    for method, runs in students.items():
        adaptive = next((r for r in runs if len(r.get("shares_over_training", [])) > 1), None)
        if adaptive:
            return _plot_shares_over_training(method, adaptive, path, seed)
    for runs in students.values():
        shares = next((r["shares"] for r in runs if len(r.get("shares", {})) > 1), None)
        if shares:
            fig, ax = _subplots((5, 3))
            ax.bar(list(shares), [100 * v for v in shares.values()])
            ax.set_ylabel("share of examples (%)")
            ax.set_title("Task sampling shares (∝ |D|^α)")
            ax.grid(axis="y", alpha=0.3)
            return _save(fig, path)
    return None


def _plot_shares_over_training(method: str, record: dict[str, Any], path: Path, seed: str) -> Path:
    """Each task's share as a step line from one update to the next, its static share dotted."""
    updates, total = record["shares_over_training"], record["total_steps"]
    fig, ax = _subplots((6, 3.4))
    for task, static in record["shares"].items():
        xs = [u["step"] / total for u in updates] + [1.0]
        ys = [100 * u["shares"][task] for u in updates]
        (line,) = ax.step(xs, [*ys, ys[-1]], where="post", label=task)
        ax.axhline(100 * static, color=line.get_color(), linestyle=":", linewidth=0.8)
    ax.set_xlabel("fraction of training")
    ax.set_ylabel("share of examples (%)")
    ax.set_title(f"Task sampling shares of {method} over training{_of_seed(seed)} (dotted: static)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def seed_with_records(details: dict[str, Any]) -> tuple[str, dict[str, list[str]]]:
    """The first seed whose stage records are at hand, and its stage folders: a merged report
    names each seed's stages where they trained, and a seed from another machine has none here,
    so the plots of one seed's training come from the first seed that has them ('' and no
    folders when none has)."""
    for seed in details["seeds"]:
        stages = details.get("stages", {}).get(str(seed), {})
        if _stage_runs(stages):
            return str(seed), stages
    return "", {}


def write_plots(root: Path, results: dict[str, Any]) -> list[Path]:
    """Every plot of a run folder, from its results.json; returns the files written (MissingExtra
    without matplotlib, before any is drawn)."""
    require("plots")
    details = results["details"]
    seed, stages = seed_with_records(details)
    written = [
        plot_scores(results["methods"], root / "plot_scores.png", method_labels(details["config"])),
        plot_dev_curves(stages, root / "plot_dev_curves.png", seed),
        plot_lambda(details["config"], root / "plot_lambda.png"),
        plot_shares(stages, root / "plot_shares.png", seed),
    ]
    return [path for path in written if path is not None]
