"""A user's own task, described in a small YAML file and usable wherever a GLUE task name is.

Example (``my_task/task.yaml``; paths are relative to the YAML file's folder, or absolute)::

    name: reviews            # lower-case letters, digits, _ and -; becomes a folder name
    format: tsv              # tsv, csv or jsonl (files need a header row; JSONL: one object a line)
    files:
      train: train.tsv
      dev: dev.tsv
      test: test.tsv         # optional, unlabeled
    text_columns: [title, body]   # one column (a string) or two for a pair
    label_column: rating
    labels: [bad, good]      # label values exactly as the files write them
    metric: accuracy         # optional: accuracy, f1 or mcc (f1 needs two labels; the 2nd is positive)
    index_column: id         # optional: the id written into prediction files

A regression task writes ``type: regression`` instead of ``labels`` (metric pearson or spearman,
default spearman). Every mistake is a :class:`BamError` naming the YAML file, the line and the key,
because a typo here would otherwise surface much later as a puzzling training failure.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, cast

import yaml

from bam import safeyaml
from bam.errors import BamError
from bam.tasks.glue import GLUE_TASKS
from bam.tasks.pools import POOL_TASKS
from bam.tasks.spec import SplitFile, TaskKind, TaskSpec

_KEYS = (
    "name",
    "format",
    "files",
    "text_columns",
    "label_column",
    "labels",
    "type",
    "metric",
    "index_column",
)
_REQUIRED = ("name", "format", "files", "text_columns", "label_column")
_FORMATS = ("tsv", "csv", "jsonl")
_SPLITS = ("train", "dev", "test")
_METRICS = {"classification": ("accuracy", "f1", "mcc"), "regression": ("pearson", "spearman")}
_DEFAULT_METRIC = {"classification": "accuracy", "regression": "spearman"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MISSING = object()
_BUILTIN_NAMES = {
    n.lower() for t in (*GLUE_TASKS.values(), *POOL_TASKS.values()) for n in (t.name, t.display, *t.aliases)
}


class _Doc:
    """The parsed YAML mapping plus the line of each top-level key, for messages."""

    def __init__(self, path: Path, data: dict[str, Any], lines: dict[str, int]) -> None:
        self.path, self.data, self.lines = path, data, lines

    def error(self, key: str, message: str) -> BamError:
        line = self.lines.get(key, self.lines.get(key.split(".")[0]))
        where = f" line {line}" if line is not None else ""
        return BamError(f"{self.path}{where}: {key}: {message}")

    def string(self, key: str, value: Any = _MISSING) -> str:
        """``value`` (default: the top-level ``key``'s value) checked to be a non-empty string."""
        value = self.data.get(key) if value is _MISSING else value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value


def load_custom_task(path: str | Path) -> TaskSpec:
    """Read a custom-task YAML file into a :class:`TaskSpec` (see the module docstring)."""
    doc = _parse(Path(path))
    return _task(doc, str(doc.path.parent))


def task_from_keys(where: str, data: dict[str, Any], splits: dict[str, SplitFile], root: str) -> TaskSpec:
    """A custom task from the keys its YAML file holds, checked as a file's are, for tasks written
    by bam itself (:func:`bam.data.table_task.task_from_data`): messages name ``where``, not a
    file; ``splits`` replace the files' existence check (they are written after the check)."""
    return _task(_Doc(Path(where), data, {}), root, splits)


def _task(doc: _Doc, root: str, splits: dict[str, SplitFile] | None = None) -> TaskSpec:
    """The checks and the spec; ``splits`` None: the files the YAML names, which must exist."""
    data = doc.data
    for key in data:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(_KEYS)}"
            raise doc.error(key, f"unknown key ({hint})")
    for key in _REQUIRED:
        if key not in data:
            raise BamError(f"{doc.path}: missing required key {key!r}")

    name = doc.string("name")
    if not _NAME.fullmatch(name):
        raise doc.error(
            "name", f"{name!r} must be lower-case letters, digits, '_' or '-' (it names a folder)"
        )
    if name in _BUILTIN_NAMES:
        raise doc.error("name", f"{name!r} is a built-in task's name; pick another")

    fmt = doc.string("format")
    if fmt not in _FORMATS:
        raise doc.error("format", f"{fmt!r} is not one of {', '.join(_FORMATS)}")

    kind, labels = _kind_and_labels(doc)
    text_columns = _text_columns(doc)
    label_column = doc.string("label_column")
    index_column = doc.string("index_column") if "index_column" in data else None

    metric = doc.string("metric") if "metric" in data else _DEFAULT_METRIC[kind]
    if metric not in _METRICS[kind]:
        raise doc.error("metric", f"{metric!r} does not suit a {kind} task (use {', '.join(_METRICS[kind])})")
    if metric == "f1" and len(labels) != 2:
        raise doc.error("metric", f"f1 needs exactly two labels, the task has {len(labels)}")

    splits = _splits(doc) if splits is None else splits
    return TaskSpec(
        name=name,
        display=name,
        kind=kind,
        text_columns=text_columns,
        label_column=label_column,
        labels=labels,
        splits=splits,
        metrics=(metric,),
        primary_metric=metric,
        dev_splits=("dev",) if "dev" in splits else (),
        test_splits=("test",) if "test" in splits else (),
        index_column=index_column,
        format=fmt,  # type: ignore[arg-type]
        root=root,
    )


def _parse(path: Path) -> _Doc:
    path = path.expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BamError(f"{path}: custom-task file not found") from None
    except UnicodeDecodeError as err:
        raise BamError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise BamError(f"{path}: cannot read ({err.strerror})") from None
    try:
        node, data = safeyaml.construct(text)  # safe_load, less aliases and oversized documents
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BamError(f"{path}{where}: invalid YAML ({problem})") from None
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise BamError(
            f"{path}: expected a mapping of keys (name, format, files, ...), got {type(data).__name__}"
        )
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in lines:
            raise BamError(f"{path} line {key_node.start_mark.line + 1}: {key}: key given twice")
        lines[key] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):  # e.g. files.train
            for sub_node, _ in value_node.value:
                lines[f"{key}.{sub_node.value}"] = sub_node.start_mark.line + 1
    for key in data:
        if not isinstance(key, str):
            raise BamError(f"{path}: key {key!r} is not a string")
    return _Doc(path, data, lines)


def _kind_and_labels(doc: _Doc) -> tuple[TaskKind, tuple[str, ...]]:
    data = doc.data
    kind = doc.string("type") if "type" in data else "classification"
    if kind not in _METRICS:
        raise doc.error("type", f"{kind!r} is not 'classification' or 'regression'")
    kind = cast(TaskKind, kind)
    if kind == "regression":
        if "labels" in data:
            raise doc.error(
                "labels", "a regression task has no labels (remove 'labels' or 'type: regression')"
            )
        return kind, ()
    if "labels" not in data:
        raise BamError(f"{doc.path}: missing key 'labels' (or 'type: regression' for a scored task)")
    raw = data["labels"]
    if not isinstance(raw, list) or len(raw) < 2:
        raise doc.error("labels", f"expected a list of at least two label values, got {raw!r}")
    labels = []
    for value in raw:
        # YAML reads yes/no/on/off as booleans and 1.0 as a float: neither matches the file's text.
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise doc.error(
                "labels", f"label {value!r} must be written as in the files (quote it: '{value}')"
            )
        labels.append(str(value).strip())
    if len(set(labels)) != len(labels):
        raise doc.error("labels", f"repeated label values in {labels}")
    return kind, tuple(labels)


def _text_columns(doc: _Doc) -> tuple[str, ...]:
    raw = doc.data["text_columns"]
    columns = [raw] if isinstance(raw, str) else raw
    if not isinstance(columns, list) or not 1 <= len(columns) <= 2:
        raise doc.error("text_columns", f"expected one column name or a list of one or two, got {raw!r}")
    names = tuple(doc.string("text_columns", value) for value in columns)
    if len(set(names)) != len(names):
        raise doc.error("text_columns", f"the same column twice: {list(names)}")
    return names


def _splits(doc: _Doc) -> dict[str, SplitFile]:
    files = doc.data["files"]
    if not isinstance(files, dict) or not files:
        raise doc.error("files", "expected a mapping such as {train: train.tsv, dev: dev.tsv}")
    splits: dict[str, SplitFile] = {}
    for split, value in files.items():
        key = f"files.{split}"
        if split not in _SPLITS:
            close = difflib.get_close_matches(str(split), _SPLITS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use {', '.join(_SPLITS)}"
            raise doc.error(key, f"unknown split ({hint})")
        file = doc.string(key, value)
        full = Path(file).expanduser()
        full = full if full.is_absolute() else doc.path.parent / full
        if not full.is_file():
            raise doc.error(key, f"file not found: {full}")
        stored = str(full) if Path(file).expanduser().is_absolute() else file
        splits[split] = SplitFile(stored, labeled=split != "test")
    if "train" not in splits and "dev" not in splits:
        raise doc.error("files", "needs at least a train or a dev file")
    return splits
