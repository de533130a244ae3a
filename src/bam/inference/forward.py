"""Run a model forward over a tokenized split: no gradients, longest rows first, big batches.

Evaluation, teacher-output recording, prediction and GLUE submission all go through
:func:`predict_outputs`, so they agree on what the model says about a row.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from bam.cpu.onednn import onednn_linears
from bam.data.batching import collate, inference_order
from bam.data.features import Features
from bam.model import BamModel
from bam.precision import FP32, Precision, autocast
from bam.progress import progress_bar


def predict_outputs(
    model: BamModel,
    features: Features,
    head: str,
    pad_id: int,
    batch_size: int = 128,
    progress: str | None = None,
    precision: Precision | None = None,
) -> np.ndarray:
    """Raw head outputs in row order, as fp32: logits (rows, labels) or scores (rows,).

    ``precision`` is the one the model trained in (None: fp32). fp32 on CPU goes through oneDNN's
    fused linear layers (:mod:`bam.cpu.onednn`); bf16 and fp16 run under autocast."""
    return predict_heads_outputs(model, features, [head], pad_id, batch_size, progress, precision)[head]


@torch.inference_mode()
def predict_heads_outputs(
    model: BamModel,
    features: Features,
    heads: list[str],
    pad_id: int,
    batch_size: int = 128,
    progress: str | None = None,
    precision: Precision | None = None,
) -> dict[str, np.ndarray]:
    """Every head in ``heads`` on every row, the encoder run once per batch: {head: outputs}
    (in ``precision``, as :func:`predict_outputs`).

    A multi-task model served as k single-task passes would pay for k encoder passes; this is
    the one pass, and with one head it is exactly :func:`predict_outputs`.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(features)
    out: dict[str, np.ndarray] = {}
    for head in heads:
        spec = model.head_specs[head]
        out[head] = np.zeros((n,) if spec.kind == "regression" else (n, spec.num_outputs), dtype=np.float32)
    task_ids = np.zeros(n, dtype=np.int64)
    batches = inference_order(features.lengths, batch_size)
    precision = precision or FP32
    fused = onednn_linears(model) if not precision.mixed else contextlib.nullcontext()
    with fused, autocast(precision, device):
        for rows in progress_bar(batches, desc=progress, disable=progress is None, leave=False, unit="batch"):
            inputs = {k: v.to(device) for k, v in collate([features], task_ids[rows], rows, pad_id).items()}
            everything = torch.arange(len(rows), device=device)
            answers = model(**inputs, groups=dict.fromkeys(heads, everything))
            for head in heads:
                out[head][rows] = answers[head].float().cpu().numpy()
    model.train(was_training)
    return out


def outputs_to_predictions(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Label ids (argmax) for classification, scores for regression."""
    return outputs if kind == "regression" else outputs.argmax(axis=-1)
