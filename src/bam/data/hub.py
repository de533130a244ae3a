"""Read a GLUE split from the Hugging Face hub (``nyu-mll/glue``) through ``datasets``.

The hub renames columns (``premise``/``hypothesis``) and stores labels as ``ClassLabel`` ids whose
names differ from what the official files write (``acceptable`` vs ``1``). Each hub row is turned
back into a row with the task's *file* column names and label values, then goes through the same
:func:`rows_to_examples` as the file readers, so hub and file data for the same rows are equal
Examples (same fingerprint) and pass the same checks.
"""

from __future__ import annotations

from typing import Any

from bam.data.examples import Examples
from bam.data.readers import Row, rows_to_examples
from bam.errors import BamError
from bam.extras import require
from bam.tasks.spec import TaskSpec

UNLABELED = -1  # the hub's label id for rows without a label (test splits)


def read_hub_split(
    task: TaskSpec, split: str, *, cache_dir: str | None = None, revision: str | None = None
) -> Examples:
    """Load ``split`` of ``task`` from the hub source in its table entry (``task.hub``)."""
    hub = task.hub
    if hub is None:
        raise BamError(f"task {task.name!r} has no Hugging Face hub source; give a data folder instead")
    if split not in hub.splits:
        raise BamError(
            f"task {task.name!r} has no split {split!r} on the hub (it has: {', '.join(hub.splits)})"
        )
    hub_split = hub.splits[split]
    source = f"hub {hub.dataset} ({hub.config}, {hub_split})"
    labeled = task.splits[split].labeled if split in task.splits else False

    datasets = require("hub")  # imported here: slow to import, an extra, and only for hub data

    try:
        dataset = datasets.load_dataset(
            hub.dataset, hub.config, split=hub_split, cache_dir=cache_dir, revision=revision
        )
    except (OSError, ValueError) as err:  # network, missing dataset/config/split
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BamError(f"{source}: cannot load ({first})") from None

    wanted = [*hub.text_columns, hub.index_column] + ([hub.label_column] if labeled else [])
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise BamError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))} "
            f"(found: {', '.join(map(repr, dataset.column_names))})"
        )
    table = dataset.data
    texts = [table.column(c).to_pylist() for c in hub.text_columns]
    index = table.column(hub.index_column).to_pylist()
    labels = None
    if labeled:
        values = table.column(hub.label_column).to_pylist()
        labels = _file_labels(task, dataset.features[hub.label_column], values, source)

    rows: list[tuple[int, Row]] = []
    for i in range(dataset.num_rows):
        row: Row = {column: _text(values[i]) for column, values in zip(task.text_columns, texts, strict=True)}
        if not labeled and task.index_column:
            # Test ids are what submission files need; the hub's idx equals the files' index there.
            row[task.index_column] = str(index[i])
        if labels is not None and task.label_column:
            row[task.label_column] = labels[i]
        rows.append((i + 1, row))
    return rows_to_examples(task, split, rows, source, labeled=labeled)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _file_labels(task: TaskSpec, feature: Any, values: list[Any], source: str) -> list[str]:
    """Hub label values written as the task's files write them (by name, never by position)."""
    if task.kind == "regression":
        return ["nan" if v is None else repr(float(v)) for v in values]
    names = list(getattr(feature, "names", None) or [])  # a ClassLabel's class names
    out = []
    for row, value in enumerate(values, start=1):
        if value is None or value == UNLABELED:
            raise BamError(f"{source} row {row}: no label in a labeled split")
        if not names or not isinstance(value, int):
            out.append(str(value))  # a plain (string or integer) label column
            continue
        name = names[value] if 0 <= value < len(names) else None
        # NLI configs name their classes as the files do; CoLA/SST-2/MRPC/QQP/WNLI files write 0/1.
        out.append(name if name in task.labels else str(value))
    return out
