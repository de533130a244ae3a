"""What a GLUE data folder holds: rows and label counts per task and split (``bam data inspect``).

Every file found is read in full with the same readers training uses, so a file that would break
training breaks here first, with its path and line, instead of being skipped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bam.data.readers import read_split, split_path
from bam.errors import BamError
from bam.tasks.glue import GLUE_TASKS


def inspect_data_dir(path: str | Path) -> dict[str, Any]:
    """``{"tasks": {TASK: {SPLIT: {"rows": N, "labels": {LABEL: COUNT}}}}}`` for the files present.

    Tasks use the table's canonical names and splits the files' names; label values are counted as
    the files write them, and ``labels`` is ``{}`` for unlabeled and regression splits.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise BamError(f"{folder}: not a folder")
    report: dict[str, Any] = {}
    for name, task in GLUE_TASKS.items():
        found: dict[str, Any] = {}
        for split, spec in task.splits.items():
            if not split_path(task, split, folder).is_file():
                continue
            examples = read_split(task, split, folder)
            counts: dict[str, int] = {}
            if spec.labeled and task.kind == "classification" and examples.labels is not None:
                tally = Counter(examples.labels.tolist())
                counts = {task.labels[i]: tally[i] for i in sorted(tally)}
            found[split] = {"rows": len(examples), "labels": counts}
        if found:
            report[name] = found
    return {"tasks": report}


def format_inspect_table(report: dict[str, Any]) -> str:
    """The report as an aligned text table, one line per task split."""
    header = ("task", "split", "rows", "labels")
    lines = [header]
    for task, splits in report.get("tasks", {}).items():
        for split, info in splits.items():
            labels = " ".join(f"{label}:{count}" for label, count in info["labels"].items()) or "-"
            lines.append((task, split, str(info["rows"]), labels))
    if len(lines) == 1:
        return "no GLUE files found"
    widths = [max(len(row[i]) for row in lines) for i in range(3)]
    out = []
    for row in lines:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
