"""How methods are called and ordered in tables and plots, and which task columns a table has."""

from __future__ import annotations

from bam.tasks import BUILTIN_TASKS

METHOD_NAMES = {
    "single": "Single (teachers)",
    "multi": "Multi (gold labels)",
    "bam": "BAM (teacher annealing)",
}


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
