"""Read a task split from TSV, CSV or JSONL into :class:`Examples`, refusing bad rows clearly.

GLUE files are tab-separated with no quoting (``csv.QUOTE_NONE``): default CSV quote handling
silently merges rows. Columns are found by header name; files without a header (CoLA train/dev)
get their names from the task table. Every problem is a :class:`BamError` naming file and line.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bam.data.examples import Examples
from bam.errors import BamError
from bam.tasks.spec import HashPart, TaskSpec

csv.field_size_limit(sys.maxsize)

Row = dict[str, str]


def split_path(task: TaskSpec, split: str, data_dir: str | Path) -> Path:
    """Where a split's file lives: absolute paths stay, others are under the task root or data dir."""
    if split not in task.splits:
        raise BamError(f"task {task.name!r} has no split {split!r} (it has: {', '.join(task.splits)})")
    relative = Path(task.splits[split].path)
    if relative.is_absolute():
        return relative
    return Path(task.root if task.root is not None else data_dir) / relative


def read_split(task: TaskSpec, split: str, data_dir: str | Path) -> Examples:
    """Read one split of ``task`` from files under ``data_dir``."""
    path = split_path(task, split, data_dir)
    spec = task.splits[split]
    if not path.is_file():
        raise BamError(f"{path}: file not found (task {task.name}, split {split})")
    rows = list(_iter_rows(path, task.format, spec.header, spec.columns))
    if spec.part is not None:
        rows = _part_rows(rows, spec.part, path)
    return rows_to_examples(task, split, rows, str(path), labeled=spec.labeled)


def _part_rows(rows: list[tuple[int, Row]], part: HashPart, path: Path) -> list[tuple[int, Row]]:
    """The rows of ``part`` (a split cut from a shared file), in file order."""
    kept = []
    for line, row in rows:
        if part.column not in row:
            raise BamError(f"{path} line {line}: missing column {part.column!r}, which splits this file")
        if part.keeps(row[part.column]):
            kept.append((line, row))
    return kept


def rows_to_examples(
    task: TaskSpec, split: str, rows: list[tuple[int, Row]], source: str, labeled: bool, unit: str = "line"
) -> Examples:
    """Turn ``(line, {column: value})`` rows into Examples, checking columns and labels; messages
    name a row as ``{source} {unit} {line}`` (``train.tsv line 7``, ``DataFrame row 3``)."""
    if not rows:
        raise BamError(f"{source}: split {split!r} of task {task.name} has no rows")
    wanted = list(task.text_columns) + ([task.label_column] if labeled and task.label_column else [])
    check_columns(rows, wanted, source, unit)
    texts = tuple([row[c] for _, row in rows] for c in task.text_columns)
    ids = [row.get(task.index_column, "") if task.index_column else "" for _, row in rows]
    ids = [value if value != "" else str(i) for i, value in enumerate(ids)]
    labels = None
    if labeled and task.label_column:
        labels = _parse_labels(task, rows, source, unit)
    return Examples(task.name, split, texts, labels, ids, source)


def check_columns(rows: list[tuple[int, Row]], wanted: list[str], source: str, unit: str = "line") -> None:
    """Every row has every ``wanted`` column (JSONL rows need not share their keys)."""
    for line, row in rows:
        missing = [c for c in wanted if c not in row]
        if missing:
            raise BamError(
                f"{source} {unit} {line}: missing column(s) {', '.join(map(repr, missing))} "
                f"(found: {', '.join(map(repr, row))})"
            )


def _parse_labels(task: TaskSpec, rows: list[tuple[int, Row]], source: str, unit: str) -> np.ndarray:
    column = task.label_column
    assert column is not None
    if task.kind == "regression":
        scores = np.empty(len(rows), dtype=np.float32)
        for i, (line, row) in enumerate(rows):
            try:
                value = float(row[column])
            except ValueError:
                raise BamError(f"{source} {unit} {line}: {column} {row[column]!r} is not a number") from None
            if not math.isfinite(value):
                raise BamError(f"{source} {unit} {line}: {column} {row[column]!r} is not finite")
            scores[i] = value
        return scores
    index = {label: i for i, label in enumerate(task.labels)}
    ids = np.empty(len(rows), dtype=np.int64)
    for i, (line, row) in enumerate(rows):
        label = row[column].strip()
        if label not in index:
            raise BamError(
                f"{source} {unit} {line}: unknown label {label!r} in column {column!r} "
                f"(expected one of {', '.join(task.labels)})"
            )
        ids[i] = index[label]
    return ids


def _iter_rows(path: Path, fmt: str, header: bool, columns: tuple[str, ...]) -> Iterator[tuple[int, Row]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if fmt == "jsonl":
                yield from _jsonl_rows(handle, path)
            else:
                yield from _delimited_rows(handle, path, fmt, header, columns)
    except UnicodeDecodeError:
        raise BamError(f"{path}: not UTF-8 text ({_first_bad_byte(path)})") from None


def _first_bad_byte(path: Path) -> str:
    """Where a file stops being UTF-8, as line and byte offset in the file.

    The decoding error raised while reading counts bytes from the start of the decoder's current
    chunk, not of the file, so the file is decoded again in one piece to find the real position.
    """
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return f"line {line}, byte {err.start}: {err.reason}"
    return "decoding failed"


def _delimited_rows(
    handle, path: Path, fmt: str, header: bool, columns: tuple[str, ...]
) -> Iterator[tuple[int, Row]]:
    if fmt == "tsv":
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    elif fmt == "csv":
        reader = csv.reader(handle)
    else:
        raise BamError(f"{path}: unknown format {fmt!r} (expected tsv, csv or jsonl)")
    names: list[str] | None = None if header else list(columns)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise BamError(f"{path} line {reader.line_num}: {err}") from None
        line = reader.line_num
        if not fields or fields == [""]:
            continue  # blank line (e.g. a trailing newline)
        if names is None:
            names = [name.strip() for name in fields]
            if len(set(names)) != len(names):
                raise BamError(f"{path} line {line}: repeated column names in header {names}")
            continue
        if len(fields) != len(names):
            raise BamError(f"{path} line {line}: {len(fields)} fields, expected {len(names)}")
        yield line, dict(zip(names, fields, strict=True))


def _jsonl_rows(handle, path: Path) -> Iterator[tuple[int, Row]]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise BamError(f"{path} line {line_number}: invalid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise BamError(f"{path} line {line_number}: expected a JSON object")
        yield line_number, {str(k): _jsonl_value(v, k, path, line_number) for k, v in obj.items()}


def _jsonl_value(value: object, key: str, path: Path, line_number: int) -> str:
    """Texts, labels and ids as read from a TSV: numbers and booleans as written, null as empty.
    A list or object would otherwise become its Python repr and be trained on as a sentence."""
    if isinstance(value, list | dict):
        kind = "a list" if isinstance(value, list) else "an object"
        raise BamError(f"{path} line {line_number}: field {key!r} holds {kind}, not text or a number")
    return "" if value is None else str(value)
