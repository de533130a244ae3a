"""Rows to predict, read lazily: files, stdin, a ``datasets.Dataset``, a pandas DataFrame or dicts.

Every source is an iterator of ``(position, {column: text})`` read as it is consumed, so a
million-row file is never held in memory. Which columns hold the texts and the id is decided
once, from the first row (:class:`Reading`); every later row is checked against that choice and
refused with its file and line (or table and row), exactly as training data is.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bam.data.examples import Examples
from bam.data.readers import Row, _delimited_rows, _iter_rows, _jsonl_rows
from bam.data.tables import RowSource
from bam.errors import BamError
from bam.tasks.spec import TaskSpec

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Generic JSONL/TSV/CSV keys accepted when a row lacks the task's own text columns.
GENERIC_SINGLE = ("text",)
GENERIC_PAIR = ("text_a", "text_b")
# Columns tried, in order, for the "id" of each output row (after the task's own index column).
ID_COLUMNS = ("id", "index", "idx")


# ----------------------------------------------------------------------------- files and stdin


def open_rows(input_path: str | None, input_format: str | None) -> RowSource:
    """The rows of a TSV/CSV (with header) or JSONL file, or of stdin, read as they are consumed."""
    if input_format is not None and input_format not in FORMATS.values():
        raise BamError(f"input format {input_format!r}: expected tsv, csv or jsonl")
    if input_path is None or input_path == "-":
        if input_format is None:
            raise BamError("reading stdin needs the input format (jsonl, tsv or csv with a header row)")
        return RowSource(_read_handle(_strict_stdin(), input_format), "<stdin>")
    path = Path(input_path)
    fmt = input_format or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BamError(f"{path}: cannot tell the format from the extension; give it (tsv, csv or jsonl)")
    if not path.is_file():
        raise BamError(f"{path}: file not found")
    return RowSource(_iter_rows(path, fmt, True, ()), str(path))


def _strict_stdin() -> TextIO:
    """Standard input decoded like the files: UTF-8 (a BOM allowed), bad bytes an error. Python's
    own stdin lets them through as surrogates under a C/POSIX locale, and the tokenizer fails."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (a notebook, a test's StringIO)
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="strict", newline="")


def _read_handle(handle: TextIO, fmt: str) -> Iterator[tuple[int, Row]]:
    source = Path("<stdin>")
    try:
        if fmt == "jsonl":
            yield from _jsonl_rows(handle, source)
        else:
            yield from _delimited_rows(handle, source, fmt, True, ())
    except UnicodeDecodeError as err:
        raise BamError(f"<stdin>: not UTF-8 text ({err.reason})") from None


# ----------------------------------------------------------------------------- which columns


def check_text_count(task: TaskSpec | None, count: int, given: str) -> None:
    """A pair task's head learnt from pairs: given one text, it would answer, wrongly, without error."""
    if task is not None and count != len(task.text_columns):
        shape = "pairs (text_a, text_b)" if task.is_pair else "single texts"
        raise BamError(f"task {task.name} takes {shape}, got {given}")


@dataclass(frozen=True)
class Reading:
    """Where each row's texts and id are: fixed by the first row, so every chunk reads the same."""

    columns: tuple[str, ...]
    fallback: tuple[str, ...]  # generic keys a row may use instead
    index: str | None  # the id column, or None for row numbers (from 0)

    @classmethod
    def choose(cls, tasks: list[TaskSpec | None], text_columns: list[str] | None, first: Row) -> Reading:
        """Columns: ``text_columns`` if given; else the first of the tasks' own column sets that the
        first row has (the tasks' first set when it has none); a task-less head (a custom head
        named only) reads the generic keys. Id: a task's index column, else ``id``, ``index``,
        ``idx``, whichever the first row has first, else the row number."""
        known = [t for t in tasks if t is not None]
        if text_columns:
            if len(text_columns) not in (1, 2):
                raise BamError(f"text columns: give one or two, got {len(text_columns)}")
            for task in known:
                check_text_count(task, len(text_columns), f"text column(s) {', '.join(text_columns)}")
            columns: tuple[str, ...] | None = tuple(text_columns)
        else:
            own = list(dict.fromkeys(t.text_columns for t in known))
            columns = next((c for c in own if all(k in first for k in c)), own[0] if own else None)
        if columns is None:
            fallback = GENERIC_PAIR if all(k in first for k in GENERIC_PAIR) else GENERIC_SINGLE
            columns = fallback
        else:
            fallback = GENERIC_PAIR if len(columns) == 2 else GENERIC_SINGLE
        indexes = [t.index_column for t in known if t.index_column]
        index = next((c for c in (*dict.fromkeys(indexes), *ID_COLUMNS) if c in first), None)
        return cls(columns, fallback, index)

    def examples(self, rows: list[tuple[int, Row]], source: RowSource, start: int, name: str) -> Examples:
        """Rows numbered from ``start`` (in the whole input) as Examples; a row lacking its texts
        is refused with its line."""
        texts: tuple[list[str], ...] = tuple([] for _ in self.columns)
        ids: list[str] = []
        for offset, (line, row) in enumerate(rows):
            keys = self.columns if all(c in row for c in self.columns) else self.fallback
            if not all(k in row for k in keys):
                missing = ", ".join(repr(c) for c in self.columns if c not in row)
                found = ", ".join(map(repr, row)) or "none"
                raise BamError(
                    f"{source.where(line)}: missing column(s) {missing} "
                    f"(or {', '.join(map(repr, self.fallback))}; found: {found})"
                )
            for column, key in zip(texts, keys, strict=True):
                column.append(row[key])
            row_id = row.get(self.index, "") if self.index else ""
            ids.append(row_id if row_id != "" else str(start + offset))
        return Examples(name, "predict", texts, None, ids, source.name)


def chunks(rows: Iterator[tuple[int, Row]], size: int) -> Iterator[list[tuple[int, Row]]]:
    """Consecutive lists of ``size`` rows (the last may be shorter); nothing beyond one is held."""
    chunk: list[tuple[int, Row]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
