"""Predictions from a saved model: the Python API (:class:`Predictor`) and files in, JSONL out.

Everything goes through :func:`bam.inference.predict_outputs`, the same path evaluation and GLUE
submission take, so a row gets the same answer whichever way it is asked::

    from bam import Predictor
    Predictor.load("runs/x").predict("rte", [("A man sleeps.", "A person rests.")])
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np
import torch

from bam.data.examples import Examples
from bam.data.features import tokenize
from bam.data.readers import Row, _delimited_rows, _iter_rows, _jsonl_rows, rows_to_examples
from bam.errors import BamError
from bam.fileio import atomic_write_text
from bam.inference.forward import predict_outputs
from bam.model import BamModel, HeadSpec, load_bam_model, pad_id, resolve_model_dir
from bam.tasks import get_task
from bam.tasks.spec import TaskSpec

DEFAULT_MAX_LENGTH = 128  # TrainConfig's default, for models saved without their training config
FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Generic JSONL/TSV/CSV keys accepted when a row lacks the task's own text columns.
GENERIC_SINGLE = ("text",)
GENERIC_PAIR = ("text_a", "text_b")
# Columns tried, in order, for the "id" of each output row (after the task's own index column).
ID_COLUMNS = ("id", "index", "idx")


def _known_task(name: str) -> TaskSpec | None:
    """The TaskSpec for a GLUE name/alias or a custom-task YAML path; None for a bare head name."""
    if Path(name).suffix.lower() in {".yaml", ".yml"}:
        return get_task(name)  # a broken YAML file is the user's to fix: say why
    try:
        return get_task(name)
    except BamError:
        return None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Predictor:
    """A loaded model that answers rows of text for any of its heads."""

    def __init__(
        self,
        model: BamModel,
        tokenizer: Any,
        meta: dict[str, Any],
        max_length: int | None = None,
        model_dir: Path | None = None,
    ):
        self.model = model
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.meta = meta
        train_config = meta.get("train_config") or {}
        self.max_length = int(max_length or train_config.get("max_length") or DEFAULT_MAX_LENGTH)
        self.pad_id = pad_id(tokenizer)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        trust_remote_code: bool = False,
    ) -> Predictor:
        """Load a model folder (or a training output folder); GPU when there is one, unless told."""
        folder = resolve_model_dir(model_dir)
        model, tokenizer, meta = load_bam_model(folder, trust_remote_code=trust_remote_code, device=device)
        return cls(model, tokenizer, meta, max_length, folder)

    @property
    def tasks(self) -> list[str]:
        """The model's head names."""
        return list(self.model.head_specs)

    def head_for(self, task: str) -> str:
        """The head that answers ``task``: a head name, or a task name/alias (AX → mnli's head)."""
        if task in self.model.head_specs:
            return task
        spec = _known_task(task)
        if spec is not None and spec.head_name in self.model.head_specs:
            return spec.head_name
        wanted = f"task {task!r}" + (f" (head {spec.head_name!r})" if spec and spec.head else "")
        raise BamError(f"the model has no head for {wanted}; its tasks: {', '.join(self.tasks)}")

    def outputs(self, head: str, examples: Examples, batch_size: int = 64) -> np.ndarray:
        """Raw outputs of ``head`` on ``examples``: logits (rows, labels) or scores (rows,)."""
        spec = self.model.head_specs[head]
        if len(examples) == 0:
            return np.zeros((0,) if spec.kind == "regression" else (0, spec.num_outputs), np.float32)
        features = tokenize(examples, self.tokenizer, self.max_length)
        return predict_outputs(self.model, features, head, self.pad_id, batch_size)

    def rows(self, head: str, outputs: np.ndarray) -> list[dict[str, Any]]:
        """Outputs as ``{"label", "probabilities"}`` (classification) or ``{"score"}`` per row."""
        spec: HeadSpec = self.model.head_specs[head]
        if spec.kind == "regression":
            return [{"score": float(x)} for x in outputs]
        probs = softmax(outputs.astype(np.float64))
        return [
            {
                "label": spec.labels[int(p.argmax())],
                "probabilities": {label: float(v) for label, v in zip(spec.labels, p, strict=True)},
            }
            for p in probs
        ]

    def predict(
        self, task: str, texts: list[str] | list[tuple[str, str]], batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """Predict single texts or ``(text_a, text_b)`` pairs with the head for ``task``."""
        head = self.head_for(task)
        columns = _texts_to_columns(texts)
        spec = _known_task(task)
        if columns:
            _check_text_count(spec, len(columns), f"{len(columns)} text(s) per row")
        examples = Examples(head, "predict", columns, None, [str(i) for i in range(len(texts))], "<texts>")
        return self.rows(head, self.outputs(head, examples, batch_size))


def _check_text_count(task: TaskSpec | None, count: int, given: str) -> None:
    """A pair task's head learnt from pairs: given one text, it would answer, wrongly, without error."""
    if task is not None and count != len(task.text_columns):
        shape = "pairs (text_a, text_b)" if task.is_pair else "single texts"
        raise BamError(f"task {task.name} takes {shape}, got {given}")


def _texts_to_columns(texts: list[str] | list[tuple[str, str]]) -> tuple[list[str], ...]:
    """Rows of str or (str, str) → one list per column; mixed or malformed rows are refused."""
    if isinstance(texts, str):
        raise BamError("texts must be a list of strings or of (text_a, text_b) pairs, not one string")
    rows = list(texts)
    if not rows:
        return ()
    width = 1 if isinstance(rows[0], str) else len(rows[0])
    for i, row in enumerate(rows):
        parts = (row,) if isinstance(row, str) else tuple(row)
        if len(parts) != width or width not in (1, 2) or not all(isinstance(p, str) for p in parts):
            raise BamError(
                f"texts[{i}]: expected {'a string' if width == 1 else 'a (text_a, text_b) pair of strings'}"
                f", got {row!r}"
            )
    if width == 1:
        return (cast(list[str], rows),)  # every row checked above
    return tuple([row[c] for row in rows] for c in range(width))


def read_rows(input_path: str | None, input_format: str | None) -> tuple[list[tuple[int, Row]], str]:
    """``(line, {column: value})`` rows of a TSV/CSV (with header) or JSONL file, or of stdin."""
    if input_format is not None and input_format not in FORMATS.values():
        raise BamError(f"input format {input_format!r}: expected tsv, csv or jsonl")
    if input_path is None or input_path == "-":
        if input_format is None:
            raise BamError("reading stdin needs the input format (jsonl, tsv or csv with a header row)")
        return _read_handle(_strict_stdin(), input_format), "<stdin>"
    path = Path(input_path)
    fmt = input_format or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BamError(f"{path}: cannot tell the format from the extension; give it (tsv, csv or jsonl)")
    if not path.is_file():
        raise BamError(f"{path}: file not found")
    return list(_iter_rows(path, fmt, True, ())), str(path)


def _strict_stdin() -> TextIO:
    """Standard input decoded like the files: UTF-8 (a BOM allowed), bad bytes an error. Python's
    own stdin lets them through as surrogates under a C/POSIX locale, and the tokenizer fails."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (a notebook, a test's StringIO)
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8-sig", errors="strict", newline="")


def _read_handle(handle: TextIO, fmt: str) -> list[tuple[int, Row]]:
    source = Path("<stdin>")
    try:
        if fmt == "jsonl":
            return list(_jsonl_rows(handle, source))
        return list(_delimited_rows(handle, source, fmt, True, ()))
    except UnicodeDecodeError as err:
        raise BamError(f"<stdin>: not UTF-8 text ({err.reason})") from None


def _columns_for(task: TaskSpec | None, text_columns: list[str] | None) -> tuple[str, ...] | None:
    if text_columns:
        if len(text_columns) not in (1, 2):
            raise BamError(f"text columns: give one or two, got {len(text_columns)}")
        _check_text_count(task, len(text_columns), f"text column(s) {', '.join(text_columns)}")
        return tuple(text_columns)
    return task.text_columns if task is not None else None


def rows_to_input(
    rows: list[tuple[int, Row]],
    source: str,
    head: HeadSpec,
    task: TaskSpec | None,
    text_columns: list[str] | None,
) -> Examples:
    """Pick each row's texts and id; rows lacking the task's columns may use text / text_a, text_b.

    Columns: ``text_columns`` if given, else the task's. Without either (a custom head given by
    name only) rows must use the generic keys. The id is the task's index column, else the first
    of ``id``, ``index``, ``idx`` that the first row has, else the row number (from 0).
    """
    columns = _columns_for(task, text_columns)
    fallback = GENERIC_PAIR if (columns is not None and len(columns) == 2) else GENERIC_SINGLE
    if columns is None:
        first = rows[0][1]
        fallback = GENERIC_PAIR if all(k in first for k in GENERIC_PAIR) else GENERIC_SINGLE
        columns = fallback
    normalized: list[tuple[int, Row]] = []
    for line, row in rows:
        if all(c in row for c in columns):
            normalized.append((line, row))
        elif all(k in row for k in fallback):
            normalized.append((line, {**row, **{c: row[k] for c, k in zip(columns, fallback, strict=True)}}))
        else:
            missing = ", ".join(repr(c) for c in columns if c not in row)
            raise BamError(
                f"{source} line {line}: missing column(s) {missing} (or {', '.join(map(repr, fallback))}; "
                f"found: {', '.join(map(repr, row)) or 'none'})"
            )
    index = next(
        (
            c
            for c in ((task.index_column,) if task and task.index_column else ()) + ID_COLUMNS
            if c in rows[0][1]
        ),
        None,
    )
    # rows_to_examples reads a TaskSpec: this one names the columns and id this input uses.
    reading = TaskSpec(
        name=head.task,
        display=head.task,
        kind=head.kind,  # type: ignore[arg-type]
        text_columns=columns,
        label_column=None,
        labels=head.labels,
        splits={},
        metrics=(),
        primary_metric="",
        index_column=index,
    )
    return rows_to_examples(reading, "predict", normalized, source, labeled=False)


def predict_file(
    model_dir: str | Path,
    task: str,
    input_path: str | None,
    output_path: str | None,
    input_format: str | None = None,
    text_columns: list[str] | None = None,
    *,
    batch_size: int = 64,
    predictor: Predictor | None = None,
) -> int:
    """Predict every row of a file (or stdin) and write JSONL (to ``output_path`` or stdout).

    Each output line is ``{"id", "label", "probabilities"}`` or ``{"id", "score"}``. The input
    format comes from the extension (.tsv, .csv, .jsonl) or ``input_format``; stdin needs it.
    Returns the number of rows written.
    """
    predictor = predictor or Predictor.load(model_dir)
    head = predictor.head_for(task)
    rows, source = read_rows(input_path, input_format)
    lines: list[str] = []
    if rows:
        spec = _known_task(task)
        examples = rows_to_input(rows, source, predictor.model.head_specs[head], spec, text_columns)
        answers = predictor.rows(head, predictor.outputs(head, examples, batch_size))
        lines = [
            json.dumps({"id": row_id, **answer}, ensure_ascii=False)
            for row_id, answer in zip(examples.ids, answers, strict=True)
        ]
    text = "".join(line + "\n" for line in lines)
    if output_path is None or output_path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(output_path, text)
    return len(lines)
