"""Export what bam trains, in a format standard tools load without bam, with a model card.

``bam export --model DIR --task T --out DIR [--format auto|transformers|onnx|bam]``:

* ``transformers`` (one head): a plain ``*ForSequenceClassification`` folder for
  ``AutoModelForSequenceClassification`` and ``pipeline("text-classification")``, where
  transformers' own classes compute what the head computes (``pooling=cls`` on the layouts below).
* ``onnx`` (one head, or ``--task all``): encoder + pooling + heads as one ONNX graph for
  ``onnxruntime``, for what no transformers class expresses: mean pooling (the default encoder's),
  ELECTRA's or DeBERTa's heads (:mod:`bam.inference.export_onnx`).
* ``bam`` (``--task all``): the bam model folder itself (one encoder, every head) for
  ``bam predict`` and ``bam.Predictor``.
* ``auto`` (default): ``transformers`` where it can express the head, ``onnx`` otherwise; ``bam``
  for ``--task all``.

Every export is run next to bam's own prediction path on sample rows before it is kept (outputs
within 1e-4, else a :class:`BamError` and nothing written; in fp32, the precision the exported
weights and graphs compute in, even for a model trained in bf16), and carries a ``README.md`` model
card (:mod:`bam.inference.model_card`), which states the precision the model trained in. The
tokenizer goes along, saved with the model's ``max_length`` as its ``model_max_length``, so
``truncation=True`` cuts where bam does.

A bam head is dropout + linear on the encoder's pooled vector (with ``pooling=cls``: its pooler
where it has one, the [CLS] state otherwise). Two Hugging Face head layouts compute exactly that:

* BERT-style (BERT, MiniLM, ALBERT, ...): base model with its pooler + linear ``classifier``.
  Encoder → ``<base_model_prefix>.*`` (pooler included), head → ``classifier.*``.
* RoBERTa-style (RoBERTa, XLM-R, ...): base model without pooler + ``classifier.dense`` → tanh →
  ``classifier.out_proj``. bam's RoBERTa encoder keeps its tanh pooler, so pooler → ``dense``,
  head → ``out_proj``.

Labels: ``id2label`` holds the task's label values as its files write them (``entailment``,
``not_entailment``; ``0``/``1`` for CoLA, SST-2, MRPC, QQP, WNLI, whose files have no names).
Regression heads (STS-B) export with ``num_labels=1``, ``problem_type="regression"`` and the
single label ``score``; transformers' text-classification pipeline returns its raw score from
4.46 on (older versions apply a sigmoid unless called with ``function_to_apply="none"``).
Weights are saved as ``model.safetensors``.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from bam.errors import BamError
from bam.fileio import atomic_dir, atomic_write_text, claim_folder
from bam.inference.export_onnx import CHECK_ROWS, bam_outputs, write_onnx
from bam.inference.model_card import model_card, usage
from bam.inference.predict import Predictor
from bam.model import HeadSpec

REGRESSION_LABEL = "score"
FORMATS = ("auto", "transformers", "onnx", "bam")
CARD_FILE = "README.md"
ATOL = 1e-4
ONNX_HINT = " (--format onnx exports it)"


@dataclass(frozen=True)
class Export:
    """What was written: the folder, its format, the heads it holds, and why that format (auto)."""

    path: Path
    format: str
    heads: list[str]
    reason: str = ""


def _hf_config(predictor: Predictor, spec: HeadSpec):
    """The encoder's config with the head's labels and problem type."""
    config = copy.deepcopy(predictor.model.encoder.config)
    if spec.kind == "regression":
        labels: tuple[str, ...] = (REGRESSION_LABEL,)
        config.problem_type = "regression"
    else:
        labels = spec.labels
        config.problem_type = "single_label_classification"
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.num_labels = len(labels)
    config.architectures = None
    if hasattr(config, "classifier_dropout"):
        config.classifier_dropout = predictor.model.dropout
    return config


def _unsupported(model_type: str, detail: str) -> BamError:
    return BamError(
        f"export supports BERT-style encoders (pooler + linear classifier) and RoBERTa-style heads "
        f"(dense + tanh + out_proj); {model_type}'s sequence classifier differs: {detail}{ONNX_HINT}"
    )


def _mapped_state(predictor: Predictor, head: str, hf: PreTrainedModel) -> dict[str, torch.Tensor]:
    """bam's weights under the Hugging Face model's names, for the layouts described above."""
    model_type = hf.config.model_type
    if predictor.model.pooling != "cls":
        raise BamError(
            f"a transformers export needs a model trained with pooling=cls; this one "
            f"{predictor.model.pooling}-pools, which no Hugging Face sequence classifier computes{ONNX_HINT}"
        )
    prefix = hf.base_model_prefix
    base = getattr(hf, prefix, None)
    encoder = predictor.model.encoder
    if base is None or type(base) is not type(encoder):
        raise _unsupported(model_type, f"its base model is not a {type(encoder).__name__}")
    linear = predictor.model.head_layer(head)
    encoder_state = encoder.state_dict()
    classifier = getattr(hf, "classifier", None)
    if isinstance(classifier, nn.Linear):
        state = {f"{prefix}.{k}": v for k, v in encoder_state.items()}
        state.update({"classifier.weight": linear.weight, "classifier.bias": linear.bias})
        return state
    dense, out_proj = getattr(classifier, "dense", None), getattr(classifier, "out_proj", None)
    pooler_dense = getattr(getattr(encoder, "pooler", None), "dense", None)
    if (
        isinstance(dense, nn.Linear)
        and isinstance(out_proj, nn.Linear)
        and isinstance(pooler_dense, nn.Linear)
    ):
        state = {f"{prefix}.{k}": v for k, v in encoder_state.items() if not k.startswith("pooler.")}
        state.update(
            {
                "classifier.dense.weight": pooler_dense.weight,
                "classifier.dense.bias": pooler_dense.bias,
                "classifier.out_proj.weight": linear.weight,
                "classifier.out_proj.bias": linear.bias,
            }
        )
        return state
    raise _unsupported(model_type, f"its classifier is a {type(classifier).__name__}")


def _load_exact(hf: PreTrainedModel, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = hf.load_state_dict(state, strict=False)
    buffers = {name for name, _ in hf.named_buffers()}
    missing = [k for k in missing if k not in buffers]
    if missing or unexpected:
        raise _unsupported(
            hf.config.model_type, f"weights do not map (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _hf_model(predictor: Predictor, head: str, trust_remote_code: bool) -> PreTrainedModel:
    """The transformers classifier holding the head's weights; a BamError where none computes it."""
    config = _hf_config(predictor, predictor.model.head_specs[head])
    try:
        hf = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as err:
        raise _unsupported(config.model_type, str(err).strip().splitlines()[0]) from None
    hf.to(next(predictor.model.parameters()).device)
    _load_exact(hf, _mapped_state(predictor, head, hf))
    return hf.eval()


@torch.inference_mode()
def _check_same_outputs(predictor: Predictor, head: str, hf: PreTrainedModel) -> None:
    """Run the exported model and bam's prediction path on sample rows; refuse unless they agree."""
    device = next(predictor.model.parameters()).device
    for texts in CHECK_ROWS:
        inputs = predictor.tokenizer(
            *texts, padding=True, truncation=True, max_length=predictor.max_length, return_tensors="pt"
        ).to(device)
        expected = torch.from_numpy(bam_outputs(predictor, head, texts))
        try:
            got = hf(**inputs).logits.float().cpu()
        except (IndexError, RuntimeError) as err:
            raise _unsupported(
                hf.config.model_type, f"it cannot run the tokenizer's inputs ({err})"
            ) from None
        got = got.squeeze(-1) if expected.dim() == 1 else got
        if got.shape != expected.shape or not torch.allclose(got, expected, atol=ATOL, rtol=0):
            diff = (got - expected).abs().max().item() if got.shape == expected.shape else got.shape
            raise _unsupported(hf.config.model_type, f"exported logits differ from bam's (max diff {diff})")


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Never replace a file, the working folder or one above it, or (unasked) a folder's contents."""
    here = Path.cwd().resolve()
    if not str(out_dir).strip() or out_dir.resolve() in (here, *here.parents):
        raise BamError(f"--out {str(out_dir)!r}: give a new folder to write the model into")
    if out_dir.exists() and not out_dir.is_dir():
        raise BamError(f"{out_dir}: is a file, not a folder")
    if not overwrite:  # with it, the export replaces the folder atomically once it is written
        claim_folder(out_dir, False, ours=False, what="model export")


def _choose(fmt: str, predictor: Predictor, heads: list[str], trust_remote_code: bool):
    """(format, transformers model or None, why): ``auto`` takes transformers where it can."""
    if fmt not in FORMATS:
        raise BamError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    many = len(heads) > 1
    if fmt == "bam" or (fmt == "auto" and many):
        return "bam", None, ""
    if fmt == "onnx":
        return "onnx", None, ""
    if many:
        raise BamError(
            f"a transformers folder holds one head; this model has {len(heads)} ({', '.join(heads)}): "
            "export one with --task, or all with --format bam or --format onnx"
        )
    if fmt == "transformers":
        return "transformers", _hf_model(predictor, heads[0], trust_remote_code), ""
    try:
        return "transformers", _hf_model(predictor, heads[0], trust_remote_code), ""
    except BamError as err:  # nothing in transformers computes this head: ONNX does
        return "onnx", None, str(err).removesuffix(ONNX_HINT)


def _save_tokenizer(predictor: Predictor, folder: Path) -> None:
    """The tokenizer, cutting at the model's max_length when asked to truncate."""
    tokenizer = copy.deepcopy(predictor.tokenizer)
    tokenizer.model_max_length = predictor.max_length
    tokenizer.save_pretrained(str(folder))


def _write_bam(predictor: Predictor, folder: Path) -> None:
    """The model folder's own files (weights, bam_model.json, tokenizer), checked by loading them."""
    if predictor.model_dir is None:
        raise BamError("--format bam copies a model folder; load the Predictor with Predictor.load(folder)")
    for path in sorted(predictor.model_dir.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name != CARD_FILE:
            shutil.copy2(path, folder / path.name)
    copied = Predictor.load(folder, device="cpu", max_length=predictor.max_length, precision="fp32")
    for head in predictor.tasks:
        for texts in CHECK_ROWS:
            got, expected = bam_outputs(copied, head, texts), bam_outputs(predictor, head, texts)
            if not np.allclose(got, expected, atol=ATOL, rtol=0):
                raise BamError(f"{folder}: the copied model's {head} outputs differ from the original's")


def export_model(
    model_dir: str | Path,
    task: str,
    out_dir: str | Path,
    *,
    format: str = "auto",
    trust_remote_code: bool = False,
    predictor: Predictor | None = None,
    overwrite: bool = False,
) -> Export:
    """Write ``out_dir``: the head for ``task`` (a head or task name, AX → MNLI's head), or every
    head for ``all``, in ``format`` (see the module's doc), with its model card.

    A folder that holds something is replaced only with ``overwrite``; atomically, and only after
    the export was checked to give bam's outputs.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    if predictor is None:
        predictor = Predictor.load(model_dir, "cpu", trust_remote_code=trust_remote_code, precision="fp32")
    elif predictor.precision.mixed:  # the export computes in fp32: checked against bam's fp32 outputs
        p = predictor
        predictor = Predictor(p.model, p.tokenizer, p.meta, p.max_length, p.model_dir, "fp32")
    heads = predictor.tasks if task == "all" else [predictor.head_for(task)]
    chosen, hf, reason = _choose(format, predictor, heads, trust_remote_code)
    specs = [predictor.model.head_specs[h] for h in heads]
    with atomic_dir(out_dir) as tmp:
        if chosen == "transformers":
            _check_same_outputs(predictor, heads[0], hf)
            hf.save_pretrained(str(tmp))  # safetensors: the default since transformers 4.35
        elif chosen == "onnx":
            write_onnx(predictor, heads, tmp)
        else:
            _write_bam(predictor, tmp)
        if chosen != "bam":
            _save_tokenizer(predictor, tmp)
        train_config = predictor.meta.get("train_config") or {}
        card = model_card(
            predictor.meta,
            specs,
            chosen,
            usage(chosen, out_dir.name, specs, train_config),
            tokenizer=predictor.tokenizer,
            max_length=predictor.max_length,
            pooling=predictor.model.pooling,
            model_dir=predictor.model_dir,
        )
        atomic_write_text(tmp / CARD_FILE, card)
    return Export(out_dir, chosen, heads, reason)


def export_hf(
    model_dir: str | Path,
    task: str,
    out_dir: str | Path,
    *,
    trust_remote_code: bool = False,
    predictor: Predictor | None = None,
    overwrite: bool = False,
) -> Path:
    """One head as a plain transformers folder (``format="transformers"``): refused where the
    head's computation has no transformers class."""
    return export_model(
        model_dir,
        task,
        out_dir,
        format="transformers",
        trust_remote_code=trust_remote_code,
        predictor=predictor,
        overwrite=overwrite,
    ).path
