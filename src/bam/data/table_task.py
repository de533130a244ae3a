"""A training task from data in memory: a ``datasets.Dataset`` or ``DatasetDict``, a pandas
DataFrame or a list of dicts per split.

The rows are checked as a file's are (the same columns, labels and messages, naming e.g.
``train: DataFrame row 3``), then written as a custom task (``task.yaml`` and one JSONL file a
split) in a folder named by the content's fingerprint. The task is then a custom task like any
other: ``train()``, ``bam run``, ``bam evaluate`` and :class:`bam.Predictor` read it through the
one file reader, the tokenization cache and stage keys follow its rows, and the same data always
gives the same path (so the same stage key), different data another::

    from bam import task_from_data
    task = task_from_data("reviews", train=frame, dev=dev_frame, text_columns="text")
    train(TrainConfig(tasks=[task]), "runs/reviews")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bam.data.readers import Row, check_columns, rows_to_examples
from bam.data.tables import RowSource, is_dataset_dict, table_rows
from bam.errors import BamError
from bam.fileio import atomic_dir, claim_folder, fingerprint
from bam.tasks.custom import task_from_keys
from bam.tasks.spec import SplitFile, TaskSpec

TASK_FILE = "task.yaml"
SPLITS = ("train", "dev", "test")  # the splits a custom task has; test is unlabeled
# A DatasetDict's split names, as bam names them.
DATASET_SPLITS = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}

Table = Any  # a datasets.Dataset, a pandas DataFrame or a list of dicts


def task_from_data(
    name: str,
    train: Table = None,
    dev: Table = None,
    test: Table = None,
    *,
    text_columns: str | list[str] | tuple[str, ...],
    label_column: str = "label",
    kind: str = "classification",
    labels: list[str] | tuple[str, ...] | None = None,
    metric: str | None = None,
    index_column: str | None = None,
    folder: str | Path | None = None,
) -> str:
    """Write a custom task from tables and return its ``task.yaml`` path, to use wherever a task
    name goes (``TrainConfig(tasks=[path])``); the model's head is called ``name``.

    ``train`` may be a ``DatasetDict`` holding every split (``train``, ``validation`` or ``dev``,
    ``test``). ``labels``: the label values in the head's order (default: the labeled split's
    values, sorted; for ``metric="f1"`` the second is the positive class); ``kind="regression"``
    reads scores instead. ``folder``: where to write it (default: ``$BAM_CACHE/tasks/<name>-<fp>``,
    ``fp`` the content's fingerprint). Any problem is a :class:`BamError` naming split and row.
    """
    tables = _split_tables(train, dev, test)
    rows = {split: _read(split, table) for split, table in tables.items()}
    columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    keys: dict[str, Any] = {
        "name": name,
        "format": "jsonl",
        "files": {split: f"{split}.jsonl" for split in rows},
        "text_columns": columns,
        "label_column": label_column,
        "type": kind,
    }
    if labels is not None:
        keys["labels"] = [str(v) for v in labels]
    elif kind == "classification":
        keys["labels"] = _labels(rows, label_column)
    keys.update({k: v for k, v in (("metric", metric), ("index_column", index_column)) if v is not None})
    splits = {split: SplitFile(f"{split}.jsonl", labeled=split != "test") for split in rows}
    spec = task_from_keys(f"task_from_data({name!r})", keys, splits, ".")
    files = {TASK_FILE: yaml.safe_dump(keys, sort_keys=False, allow_unicode=True)}
    for split, (source, items) in rows.items():
        _check(spec, split, source, items)
        files[f"{split}.jsonl"] = _jsonl(items, spec)
    target = Path(folder) if folder is not None else _cache_folder(name, files)
    _write(target, files, explicit=folder is not None)
    return str(target / TASK_FILE)


def _split_tables(train: Table, dev: Table, test: Table) -> dict[str, Table]:
    """Each split's table; a DatasetDict given as ``train`` is spread over its named splits."""
    if is_dataset_dict(train):
        if dev is not None or test is not None:
            raise BamError("task_from_data: a DatasetDict holds every split; give no dev or test beside it")
        unknown = [s for s in list(train) if s not in DATASET_SPLITS]
        if unknown:
            raise BamError(
                f"task_from_data: DatasetDict split(s) {', '.join(map(repr, unknown))}: "
                f"use {', '.join(DATASET_SPLITS)} (e.g. DatasetDict(train=..., validation=...))"
            )
        named = [DATASET_SPLITS[s] for s in list(train)]
        if len(set(named)) != len(named):
            raise BamError("task_from_data: a DatasetDict with both 'validation' and 'dev': give one")
        tables = {DATASET_SPLITS[s]: train[s] for s in list(train)}
    else:
        tables = {"train": train, "dev": dev, "test": test}
    tables = {split: tables[split] for split in SPLITS if tables.get(split) is not None}
    if "train" not in tables and "dev" not in tables:
        raise BamError("task_from_data: give at least a train or a dev split")
    return tables


def _read(split: str, table: Table) -> tuple[RowSource, list[tuple[int, Row]]]:
    """Every row of one split's table, its cells as text (a list or dict in a cell refused)."""
    if isinstance(table, list | tuple) and not table:
        raise BamError(f"{split}: no rows")
    try:
        source = table_rows(table)
        if source is None:
            raise BamError(
                f"expected a datasets.Dataset, a pandas DataFrame or a list of dicts, "
                f"got {type(table).__name__}"
            )
        items = list(source.rows)
    except BamError as err:
        raise BamError(f"{split}: {err}") from None
    if not items:
        raise BamError(f"{split}: {source.name}: no rows")
    return source, items


def _labels(rows: dict[str, tuple[RowSource, list[tuple[int, Row]]]], column: str) -> list[str]:
    """The label values of the first labeled split (train, else dev), sorted, as written."""
    split = "train" if "train" in rows else "dev"
    source, items = rows[split]
    try:
        check_columns(items, [column], source.name, source.unit)
    except BamError as err:
        raise BamError(f"{split}: {err}") from None
    values = sorted({row[column].strip() for _, row in items})
    if len(values) < 2:
        raise BamError(
            f"{split}: column {column!r} holds one label value ({values[0]!r}): a classifier needs "
            "two (give labels=[...], or kind='regression' for scores)"
        )
    return values


def _check(spec: TaskSpec, split: str, source: RowSource, items: list[tuple[int, Row]]) -> None:
    """The rows checked as the file reader will check them once written."""
    try:
        rows_to_examples(spec, split, items, source.name, labeled=split != "test", unit=source.unit)
    except BamError as err:
        raise BamError(f"{split}: {err}") from None


def _jsonl(items: list[tuple[int, Row]], spec: TaskSpec) -> str:
    """One JSON object a row with only the task's columns, as text: what the reader reads back."""
    columns = [*spec.text_columns, spec.label_column or "", spec.index_column or ""]
    return "".join(json.dumps({c: row[c] for c in columns if c in row}) + "\n" for _, row in items)


def _cache_folder(name: str, files: dict[str, str]) -> Path:
    from bam.data.features import default_cache_dir  # loads transformers: only once rows are good

    return default_cache_dir() / "tasks" / f"{name}-{fingerprint(files)}"


def _write(folder: Path, files: dict[str, str], explicit: bool) -> None:
    """Write the task's files unless ``folder`` holds exactly them already (then its path, and a
    stage keyed by it, stay the same). A folder the user named must be empty or hold a task."""
    if folder.is_dir() and all(_holds(folder / n, text) for n, text in files.items()):
        return
    if explicit:
        ours = (folder / TASK_FILE).is_file()
        claim_folder(folder, False, ours=ours, what="task", remedy="give an empty folder or a task's")
    with atomic_dir(folder) as tmp:
        for file_name, text in files.items():
            (tmp / file_name).write_text(text, encoding="utf-8")


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False
