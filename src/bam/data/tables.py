"""Python tables as rows: a ``datasets.Dataset``, a pandas DataFrame or a list of dicts.

Training tasks (:mod:`bam.data.table_task`) and predictions (:mod:`bam.inference.predict_input`)
read tables through these adapters, so a cell becomes text the same way everywhere: as a JSONL
file's value would, and a row is named in messages as ``DataFrame row 3``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bam.data.readers import Row
from bam.errors import BamError


@dataclass
class RowSource:
    """Rows as they are read, and how messages name them (``rte.tsv line 7``, ``DataFrame row 3``)."""

    rows: Iterator[tuple[int, Row]]
    name: str
    unit: str = "line"

    def where(self, position: int) -> str:
        return f"{self.name} {self.unit} {position}"


def table_rows(data: Any) -> RowSource | None:
    """A ``datasets.Dataset``, pandas DataFrame or list of dicts as rows; None for anything else.

    Values become text as a JSONL file's do: numbers and booleans as written, None (and pandas'
    NaN for a missing cell) as empty; a list or dict in a cell is refused, naming row and column.
    """
    if is_dataset_dict(data):
        splits = ", ".join(map(repr, data.keys()))
        raise BamError(f"a DatasetDict holds several splits ({splits}): give one, e.g. data[split]")
    kind = type(data).__module__.split(".")[0]
    if kind == "datasets" and hasattr(data, "column_names") and hasattr(data, "iter"):
        return RowSource(_dataset_rows(data), "Dataset", "row")
    if kind == "pandas" and hasattr(data, "columns") and hasattr(data, "itertuples"):
        return RowSource(_frame_rows(data), "DataFrame", "row")
    if isinstance(data, Sequence) and not isinstance(data, str) and data and isinstance(data[0], dict):
        return RowSource(_dict_rows(data, "rows"), "rows", "row")
    return None


def is_dataset_dict(data: Any) -> bool:
    """A ``datasets.DatasetDict`` (several named splits), told apart without importing datasets."""
    from_datasets = type(data).__module__.split(".")[0] == "datasets"
    return from_datasets and hasattr(data, "keys") and not hasattr(data, "iter")


def _cell(value: Any, column: str, where: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy scalar
        return _cell(value.item(), column, where)
    raise BamError(f"{where}: column {column!r} holds {type(value).__name__}, not text or a number")


def _dict_rows(rows: Iterable[Any], name: str) -> Iterator[tuple[int, Row]]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BamError(f"{name}[{i}]: expected a dict of column → text, got {type(row).__name__}")
        yield i, {str(k): _cell(v, str(k), f"{name}[{i}]") for k, v in row.items()}


def _dataset_rows(dataset: Any, batch: int = 1024) -> Iterator[tuple[int, Row]]:
    position = 0
    for columns in dataset.iter(batch_size=batch):  # {column: values}, a slice of Arrow at a time
        names = [str(c) for c in columns]
        for values in zip(*columns.values(), strict=True):
            where = f"Dataset row {position}"
            yield position, {c: _cell(v, c, where) for c, v in zip(names, values, strict=True)}
            position += 1


def _frame_rows(frame: Any) -> Iterator[tuple[int, Row]]:
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise BamError(f"DataFrame: repeated column names {names}")
    for position, values in enumerate(frame.itertuples(index=False, name=None)):
        where = f"DataFrame row {position}"
        yield position, {c: _cell(v, c, where) for c, v in zip(names, values, strict=True)}
