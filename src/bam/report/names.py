"""How methods are called and ordered in tables and plots, and which task columns a table has.

The paper's three methods have fixed labels; any other method taught by the task teachers keeps
its own name (``bam_cola15``, ``born_again``). A student of students is labelled by what its
settings make of it (:func:`method_labels`): ``Multi→Multi`` for a multi-task student taught by
Multi, ``BAM → fine-tuned`` for single-task models that start from BAM's student; one with
training settings of its own keeps its name in front (``mm_slow (Multi→Multi)``), and so does
one whose label another method has too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bam.config.run import RunConfig
from bam.config.train import build_dataclass
from bam.errors import BamError
from bam.tasks import BUILTIN_TASKS

METHOD_NAMES = {
    "single": "Single (teachers)",
    "multi": "Multi (gold labels)",
    "bam": "BAM (teacher annealing)",
}
SHORT_NAMES = {"single": "Single", "multi": "Multi", "bam": "BAM"}  # within another method's label
PLAIN = ("linear", "gold")  # the paper's schedules: a method with one of these is its structure


def label(method: str, labels: Mapping[str, str] | None = None) -> str:
    """A method's label in tables and plots: from ``labels`` (:func:`method_labels`), else its own."""
    return (labels or {}).get(method) or METHOD_NAMES.get(method, method)


def method_labels(run_config: Mapping[str, Any]) -> dict[str, str]:
    """Every method of a run (``results.json``'s ``details.config``) by its label; a config that
    cannot be read (an old or hand-edited file) gives no labels, and methods keep their names."""
    try:
        run = build_dataclass(RunConfig, dict(run_config), "results.json: details.config")
        labels = {name: _label(run, name) for name in run.methods}
    except (BamError, LookupError):  # LookupError: no seeds, no tasks
        return {}
    texts = list(labels.values())
    alike = [name for name, text in labels.items() if name not in METHOD_NAMES and texts.count(text) > 1]
    for name in alike:  # never two rows with one label
        labels[name] = f"{name} ({_structure(run, name, ())})"
    return labels


def _label(run: RunConfig, name: str) -> str:
    if name in METHOD_NAMES:
        return METHOD_NAMES[name]
    method = run.method(name)
    if not method.reads_a_method and method.init_from is None:  # taught by the teachers: its name,
        return name  # as every report before students of students called it
    structure = _structure(run, name, ())
    return structure if _plain(run, name) else f"{name} ({structure})"


def _plain(run: RunConfig, name: str) -> bool:
    """Its settings are only what shapes its stages (a paper's λ schedule at most)."""
    method = run.method(name)
    schedule = run.student_config(method, run.tasks, run.seeds[0]).lambda_schedule
    return set(method.overrides) <= {"lambda_schedule"} and schedule in PLAIN


def _structure(run: RunConfig, name: str, seen: tuple[str, ...]) -> str:
    """What the method's stages are: whom they learn from and where they start."""
    method = run.method(name)
    distils = run.student_config(method, run.tasks, run.seeds[0]).lambda_schedule != "gold"
    if method.init_from is not None:
        tuned = "fine-tuned" if method.per_task else "fine-tuned on all tasks"
        taught = f", taught by {_short(run, method.teacher, (*seen, name))}" if distils else ""
        return f"{_short(run, method.init_from, (*seen, name))} → {tuned}{taught}"
    kind = "Single" if method.per_task else "Multi"
    return f"{_short(run, method.teacher, (*seen, name))}→{kind}" if distils else kind


def _short(run: RunConfig, name: str, seen: tuple[str, ...]) -> str:
    """Another method as a part of a label: the paper's by short name, a plain one by its structure
    (rounds: Multi→Multi→Multi), any other by its name."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    if name in seen or name not in run.methods or not _plain(run, name):
        return name
    return _structure(run, name, seen)


def ordered(methods: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Single, Multi, BAM first (the paper's order), then any other method by name."""
    known = [m for m in METHOD_NAMES if m in methods]
    return {m: methods[m] for m in known + sorted(set(methods) - set(known))}


def task_columns(methods: dict[str, dict[str, float]]) -> list[str]:
    """Built-in tasks in the table's order (whatever order a JSON file kept), then custom tasks."""
    names: list[str] = []
    for scores in methods.values():
        names += [k for k in scores if k != "avg" and k not in names]
    builtin = [t for t in BUILTIN_TASKS if t in names]
    return builtin + [t for t in names if t not in builtin]
