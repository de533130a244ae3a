"""ONNX export: encoder + pooling + heads as one graph that ``onnxruntime`` serves without bam or torch.

Why ONNX: a mean-pooled bam head (the default encoder's pooling) averages the token states before
its linear layer, and no ``transformers`` sequence classifier computes that, so the only way to
load it there would be ``trust_remote_code``. An ONNX graph is a documented, standard format that
``onnxruntime`` (or ``optimum``) runs from any language; the tokenizer files go beside it and
``export.json`` says what the graph's inputs and outputs are:

    {"format": "bam-onnx/1", "onnx": "model.onnx", "inputs": ["input_ids", ...], "max_length": 128,
     "pad_id": 0, "pad_token": "[PAD]", "pooling": "mean",
     "heads": {"rte": {"output": "rte", "kind": "classification", "labels": [...]}, ...}}

Each head is one graph output: logits (batch, labels) or, for regression, a score per row
(batch,), exactly what :meth:`bam.Predictor.outputs` returns. The graph comes from
``torch.onnx.export(dynamo=True)``, with the batch and sequence dimensions left free; it is run
next to bam's own prediction path before anything is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bam.data.examples import Examples
from bam.errors import BamError
from bam.fileio import atomic_write_json
from bam.inference.predict import Predictor
from bam.model import BamModel

ONNX_FILE = "model.onnx"
SPEC_FILE = "export.json"
FORMAT = "bam-onnx/1"
OPSET = 18
# Sample rows for tracing and for the check: pairs, single texts, one row alone, one long row.
CHECK_ROWS: tuple[tuple[list[str], ...], ...] = (
    (
        ["A man is sleeping.", "Export check: a longer sentence that pads the shorter one in the batch."],
        ["A person rests.", "Two."],
    ),
    (["One text.", "Another, somewhat longer, single text for the batch."],),
    (["Alone in its batch."],),
    ([" ".join(["a long row that the tokenizer truncates"] * 80)], ["and its pair"]),
)


class _Graph(nn.Module):
    """What bam computes for the heads: pooled vector → each head's linear layer (dropout is off)."""

    def __init__(self, model: BamModel, heads: list[str]):
        super().__init__()
        self.model = model
        self.head_names = heads
        self.regression = [model.head_specs[h].kind == "regression" for h in heads]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        pooled = self.model.encode(input_ids, attention_mask, token_type_ids)
        outputs = []
        for head, regression in zip(self.head_names, self.regression, strict=True):
            out = self.model.head_layer(head)(pooled)
            outputs.append(out.squeeze(-1) if regression else out)
        return tuple(outputs)


def _require_onnx() -> Any:
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
        import onnxruntime
        import onnxscript  # noqa: F401  (the dynamo exporter's op library)
    except ImportError as err:
        raise BamError(
            f"the ONNX export needs onnx, onnxscript and onnxruntime ({err.name} is missing): "
            "pip install 'bam-nlu[export]'"
        ) from None
    return onnxruntime


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, warnings and log notices (skipped torchvision ops, the graph
    optimizer's every rewrite) hidden: the export is checked against bam's outputs instead."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def input_names(predictor: Predictor) -> list[str]:
    """The inputs the encoder reads: token types only where it has more than one (BERT, not RoBERTa)."""
    names = ["input_ids", "attention_mask"]
    if getattr(predictor.model.encoder.config, "type_vocab_size", 0) > 1:
        names.append("token_type_ids")
    return names


def _encode(predictor: Predictor, texts: tuple[list[str], ...], names: list[str], kind: str) -> dict:
    """The tokenizer's batch as bam pads it: to the longest row, truncated at the model's max_length."""
    encoded = predictor.tokenizer(
        *texts, padding=True, truncation=True, max_length=predictor.max_length, return_tensors=kind
    )
    return {name: encoded[name] for name in names}


def write_onnx(predictor: Predictor, heads: list[str], folder: Path) -> None:
    """Write ``model.onnx`` and ``export.json`` into ``folder`` for ``heads``; refuse unless it matches."""
    onnxruntime = _require_onnx()
    model = predictor.model.to("cpu").eval()
    names = input_names(predictor)
    sample = _encode(predictor, CHECK_ROWS[0], names, "pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                _Graph(model, heads),
                tuple(sample[name] for name in names),
                dynamo=True,
                input_names=names,
                output_names=heads,
                dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
                opset_version=OPSET,
                external_data=size > 1 << 30,  # a single protobuf file holds at most 2 GB
                verbose=False,
            )
        except Exception as err:  # the exporter raises many types; none is the user's to debug here
            line = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise BamError(f"ONNX export of {type(model.encoder).__name__} failed: {line}") from None
    assert program is not None  # dynamo=True always returns the program
    program.save(str(folder / ONNX_FILE), external_data=size > 1 << 30)
    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    check_onnx(predictor, heads, session, names)
    atomic_write_json(folder / SPEC_FILE, spec(predictor, heads, names))


def spec(predictor: Predictor, heads: list[str], names: list[str]) -> dict[str, Any]:
    """``export.json``: what a server needs besides the graph and the tokenizer."""
    tokenizer = predictor.tokenizer
    return {
        "format": FORMAT,
        "onnx": ONNX_FILE,
        "inputs": names,
        "max_length": predictor.max_length,
        "pad_id": predictor.pad_id,
        "pad_token": tokenizer.pad_token or "[PAD]",
        "pooling": predictor.model.pooling,
        "heads": {
            head: {
                "output": head,
                "kind": predictor.model.head_specs[head].kind,
                "labels": list(predictor.model.head_specs[head].labels),
            }
            for head in heads
        },
    }


def bam_outputs(predictor: Predictor, head: str, texts: tuple[list[str], ...]) -> np.ndarray:
    """``bam predict``'s answer for the rows: the shared inference path (sorted, padded, oneDNN)."""
    ids = [str(i) for i in range(len(texts[0]))]
    return predictor.outputs(head, Examples(head, "check", texts, None, ids, "<export check>"))


def check_onnx(predictor: Predictor, heads: list[str], session: Any, names: list[str], atol: float = 1e-4):
    """onnxruntime's outputs against ``bam predict``'s own path (sorted, padded, oneDNN) on sample rows."""
    for texts in CHECK_ROWS:
        feeds = {k: v.astype(np.int64) for k, v in _encode(predictor, texts, names, "np").items()}
        got = session.run(heads, feeds)
        for head, out in zip(heads, got, strict=True):
            expected = bam_outputs(predictor, head, texts)
            if out.shape != expected.shape or not np.allclose(out, expected, atol=atol, rtol=0):
                diff = np.abs(out - expected).max() if out.shape == expected.shape else out.shape
                raise BamError(f"ONNX export: head {head}'s outputs differ from bam's (max diff {diff})")
