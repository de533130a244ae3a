"""Predictions from a saved model: the Python API (:class:`Predictor`) and files in, JSONL out.

Everything goes through :func:`bam.inference.forward.predict_heads_outputs`, the path evaluation
and GLUE submission take, so a row gets the same answer whichever way it is asked::

    from bam import Predictor
    p = Predictor.load("runs/x")
    p.predict("rte", [("A man sleeps.", "A person rests.")])
    p.predict_all(pandas_frame)       # every head, the encoder run once per batch

A model runs in the precision it trained in (``bam_model.json``'s ``precision``, where the device
computes it natively; :func:`bam.precision.model_precision`), as evaluation scored it, so a bf16
model's answers are the ones its dev scores were measured on; ``precision=`` overrides it and
:attr:`Predictor.precision` says which ran and why.

Inputs are read and answered in chunks of :data:`CHUNK_ROWS` rows, so memory does not grow with
the input; a file's output appears under its name only once every row has been answered.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch

from bam.data.examples import Examples
from bam.data.features import tokenize
from bam.data.tables import table_rows
from bam.errors import BamError
from bam.fileio import atomic_writer, write_error
from bam.inference.forward import predict_heads_outputs
from bam.inference.predict_input import (
    Reading,
    RowSource,
    check_text_count,
    chunks,
    open_rows,
)
from bam.model import BamModel, HeadSpec, load_bam_model, pad_id, resolve_model_dir
from bam.precision import Precision, model_precision
from bam.progress import progress_bar
from bam.tasks import get_task
from bam.tasks.spec import TaskSpec

DEFAULT_MAX_LENGTH = 128  # TrainConfig's default, for models saved without their training config
CHUNK_ROWS = 4096  # rows read, tokenized and answered at a time: big enough to sort by length
ALL = "all"  # --task all: every head


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


def is_many(task: str | list[str]) -> bool:
    """``all``, a comma-separated string or a list of heads: each row's answer is keyed by head."""
    return not isinstance(task, str) or task.strip().lower() == ALL or "," in task


class Predictor:
    """A loaded model that answers rows of text for any of its heads, or all of them at once."""

    def __init__(
        self,
        model: BamModel,
        tokenizer: Any,
        meta: dict[str, Any],
        max_length: int | None = None,
        model_dir: Path | None = None,
        precision: str | None = None,
    ):
        """``precision``: auto, fp32, bf16 or fp16 (None: the one the model trained in)."""
        self.model = model
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.meta = meta
        train_config = meta.get("train_config") or {}
        self.max_length = int(max_length or train_config.get("max_length") or DEFAULT_MAX_LENGTH)
        self.pad_id = pad_id(tokenizer)
        self.precision: Precision = model_precision(meta, next(model.parameters()).device, precision)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str | torch.device | None = None,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        precision: str | None = None,
    ) -> Predictor:
        """Load a model folder (or a training output folder); GPU when there is one, unless told;
        in the precision it trained in unless ``precision`` (auto, fp32, bf16, fp16) says otherwise."""
        folder = resolve_model_dir(model_dir)
        model, tokenizer, meta = load_bam_model(folder, trust_remote_code=trust_remote_code, device=device)
        return cls(model, tokenizer, meta, max_length, folder, precision)

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

    def heads_for(self, task: str | list[str]) -> tuple[list[str], list[TaskSpec | None]]:
        """The heads (and their tasks) that ``task`` asks for: one name, ``all``, ``a,b,c`` or a list.

        One tokenization feeds every head of a pass, so the heads must take the same input:
        pair heads and single-text heads together are refused, naming both groups.
        """
        if isinstance(task, str):
            names = self.tasks if task.strip().lower() == ALL else [t.strip() for t in task.split(",")]
        else:
            names, task = list(task), ",".join(task)
        if any(not name for name in names):
            raise BamError(f"task {task!r}: an empty head name (give e.g. rte,stsb, or all)")
        heads = [self.head_for(name) for name in names]
        repeated = sorted({h for h in heads if heads.count(h) > 1})
        if repeated:
            raise BamError(f"task {task!r}: head {', '.join(repeated)} asked for twice")
        specs = [_known_task(name) for name in names]
        if len(heads) > 1 and "id" in heads:
            raise BamError("a head named 'id' cannot share an output row with the row's id: predict it alone")
        shapes: dict[int, list[str]] = {}
        for head, spec in zip(heads, specs, strict=True):
            if spec is not None:
                shapes.setdefault(len(spec.text_columns), []).append(head)
        if len(shapes) > 1:
            pairs, singles = ",".join(shapes[2]), ",".join(shapes[1])
            raise BamError(
                f"task {task!r}: heads {pairs} take pairs and {singles} single texts, and one pass "
                f"reads one input: ask for one kind at a time (--task {pairs}, then --task {singles})"
            )
        return heads, specs

    def outputs(self, head: str, examples: Examples, batch_size: int = 64) -> np.ndarray:
        """Raw outputs of ``head`` on ``examples``: logits (rows, labels) or scores (rows,)."""
        return self.outputs_all([head], examples, batch_size)[head]

    def outputs_all(
        self, heads: list[str], examples: Examples, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """Raw outputs of every head in ``heads``, the encoder run once per batch."""
        if len(examples) == 0:
            return {h: self._empty(self.model.head_specs[h]) for h in heads}
        features = tokenize(examples, self.tokenizer, self.max_length)
        return predict_heads_outputs(
            self.model, features, heads, self.pad_id, batch_size, precision=self.precision
        )

    @staticmethod
    def _empty(spec: HeadSpec) -> np.ndarray:
        return np.zeros((0,) if spec.kind == "regression" else (0, spec.num_outputs), np.float32)

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

    def answers(
        self, heads: list[str], examples: Examples, batch_size: int, many: bool
    ) -> list[dict[str, Any]]:
        """Per row: the head's answer (one head asked by name) or ``{head: answer}`` (``many``)."""
        outputs = self.outputs_all(heads, examples, batch_size)
        if not many:
            return self.rows(heads[0], outputs[heads[0]])
        per_head = [self.rows(head, outputs[head]) for head in heads]
        return [dict(zip(heads, row, strict=True)) for row in zip(*per_head, strict=True)]

    def predict(
        self,
        task: str | list[str],
        texts: Any,
        batch_size: int = 64,
        text_columns: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict with the head for ``task`` (``all`` or ``a,b``: several heads, see :meth:`predict_all`).

        ``texts``: single texts, ``(text_a, text_b)`` pairs, or a table (a ``datasets.Dataset``,
        a pandas DataFrame, a list of dicts) read as files are, its columns chosen as ``bam predict``
        chooses them (``text_columns``, the task's own, or ``text`` / ``text_a``, ``text_b``).
        Texts give ``{"label", "probabilities"}`` or ``{"score"}`` per row; a table's rows also
        carry their ``id`` (its id column, else the row number), as ``bam predict`` writes them.
        """
        source = table_rows(texts)
        if source is not None:
            return list(self.iter_predict(task, source, text_columns, batch_size))
        if text_columns:
            raise BamError("text_columns name a table's columns: give a Dataset, DataFrame or list of dicts")
        heads, specs = self.heads_for(task)
        columns = _texts_to_columns(texts)
        if columns:
            for spec in specs:
                check_text_count(spec, len(columns), f"{len(columns)} text(s) per row")
        ids = [str(i) for i in range(len(columns[0]) if columns else 0)]
        examples = Examples(heads[0], "predict", columns, None, ids, "<texts>")
        answers: list[dict[str, Any]] = []
        for start in range(0, len(examples), CHUNK_ROWS):
            part = examples.subset(list(range(start, min(start + CHUNK_ROWS, len(examples)))))
            answers += self.answers(heads, part, batch_size, is_many(task))
        return answers

    def predict_all(
        self,
        texts: Any,
        heads: list[str] | None = None,
        batch_size: int = 64,
        text_columns: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Every head (or those in ``heads``) on each row, the encoder run once per batch.

        Each row's answer is ``{head: {"label", "probabilities"} or {"score"}}`` (and ``id`` for
        tables). The heads must take the same input (all pairs, or all single texts).
        """
        return self.predict(list(heads) if heads else ALL, texts, batch_size, text_columns)

    def iter_predict(
        self,
        task: str | list[str],
        data: Any,
        text_columns: list[str] | None = None,
        batch_size: int = 64,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[dict[str, Any]]:
        """One output row at a time for a table or a :class:`RowSource`, read ``chunk_rows`` at a time.

        Rows are ``{"id", ...answer}`` for one head, ``{"id", head: answer, ...}`` for ``all``
        or a list of heads. A bad row raises a BamError naming its line when its chunk is read.
        """
        source = data if isinstance(data, RowSource) else table_rows(data)
        if source is None:
            kind = type(data).__name__
            raise BamError(f"cannot read rows from a {kind}: give a Dataset, DataFrame or list of dicts")
        heads, specs = self.heads_for(task)
        many = is_many(task)
        reading: Reading | None = None
        done = 0
        for chunk in chunks(source.rows, chunk_rows):
            reading = reading or Reading.choose(specs, text_columns, chunk[0][1])
            examples = reading.examples(chunk, source, done, heads[0])
            answers = self.answers(heads, examples, batch_size, many)
            for row_id, answer in zip(examples.ids, answers, strict=True):
                yield {"id": row_id, **answer}
            done += len(chunk)


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


class _Spool:
    """Lines for stdout, held in an anonymous temporary file until every row is answered; a
    failed write (a full disk) is a one-line error."""

    def __init__(self, handle: IO[str]):
        self.handle = handle

    def write(self, line: str) -> None:
        try:
            self.handle.write(line)
        except OSError as err:
            raise write_error("<stdout> (its temporary file)", err) from None


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str] | _Spool]:
    """Lines that appear at ``path`` (or on stdout) only if the block succeeds.

    A file is written by :func:`bam.fileio.atomic_writer` (a temporary name beside it, renamed at
    the end); stdout's rows are spooled to an anonymous temporary file first, so an error in the
    last row prints nothing either. Neither holds the output in memory.
    """
    if path is None or path == "-":
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n") as spool:
            yield _Spool(spool)
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout)
            sys.stdout.flush()
        return
    with atomic_writer(path) as handle:
        yield handle


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
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = False,
) -> int:
    """Predict every row of a file (or stdin) and write JSONL (to ``output_path`` or stdout).

    Each output line is ``{"id", "label", "probabilities"}`` or ``{"id", "score"}``; with ``task``
    ``all`` (or ``a,b``) it is ``{"id", head: {...}, ...}``, one key per head. The input format
    comes from the extension (.tsv, .csv, .jsonl) or ``input_format``; stdin needs it. Rows are
    read ``chunk_rows`` at a time; ``progress`` counts them on stderr (from 2 s on). Returns the
    number of rows written.
    """
    predictor = predictor or Predictor.load(model_dir)
    predictor.heads_for(task)  # an unknown head is named before the input is opened
    source = open_rows(input_path, input_format)
    written = 0
    bar = progress_bar(desc="predict", unit=" rows", disable=not progress, delay=2.0, leave=False)
    with bar, _output(output_path) as out:
        for row in predictor.iter_predict(task, source, text_columns, batch_size, chunk_rows):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
            bar.update()
    return written
