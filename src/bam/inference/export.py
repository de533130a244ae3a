"""Export one task of a bam model as a plain Hugging Face ``*ForSequenceClassification`` folder.

The folder loads with ``AutoModelForSequenceClassification.from_pretrained(folder)`` and
``pipeline("text-classification", model=folder)``; no bam code is needed to use it.

A bam head is dropout + linear on the encoder's pooled vector (with ``pooling=cls``: its pooler
where it has one, the [CLS] state otherwise; a mean-pooled model is refused, as no Hugging Face
sequence classifier mean-pools). Two Hugging Face head layouts compute exactly that, and are mapped:

* BERT-style (BERT, MiniLM, ALBERT, ...): base model with its pooler + linear ``classifier``.
  Encoder → ``<base_model_prefix>.*`` (pooler included), head → ``classifier.*``.
* RoBERTa-style (RoBERTa, XLM-R, ...): base model without pooler + ``classifier.dense`` → tanh →
  ``classifier.out_proj``. bam's RoBERTa encoder keeps its tanh pooler, so pooler → ``dense``,
  head → ``out_proj``.

Anything else (ELECTRA's dense+GELU head, DeBERTa-v2's ContextPooler, DistilBERT's
pre_classifier, ...) computes something different and is refused. Whatever the layout, the
exported model is run next to the bam model on sample inputs before anything is written: an
export either gives the same logits or fails with a :class:`BamError`.

Labels: ``id2label`` holds the task's label values as its files write them (``entailment``,
``not_entailment``; ``0``/``1`` for CoLA, SST-2, MRPC, QQP, WNLI, whose files have no names).
Regression heads (STS-B) export with ``num_labels=1``, ``problem_type="regression"`` and the
single label ``score``; transformers' text-classification pipeline returns its raw score from
4.46 on (older versions apply a sigmoid unless called with ``function_to_apply="none"``).
Weights are saved as ``model.safetensors``; the tokenizer goes along.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from bam.errors import BamError
from bam.fileio import atomic_dir, claim_folder
from bam.inference.predict import Predictor
from bam.model import HeadSpec

REGRESSION_LABEL = "score"
CHECK_TEXTS = (
    ["A man is sleeping.", "Export check: a longer sentence that pads the shorter one in the batch."],
    ["A person rests.", "Two."],
)
ATOL = 1e-4


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
        f"(dense + tanh + out_proj); {model_type}'s sequence classifier differs: {detail}"
    )


def _mapped_state(predictor: Predictor, head: str, hf: PreTrainedModel) -> dict[str, torch.Tensor]:
    """bam's weights under the Hugging Face model's names, for the layouts described above."""
    model_type = hf.config.model_type
    if predictor.model.pooling != "cls":
        raise BamError(
            f"export needs a model trained with pooling=cls; this one {predictor.model.pooling}-pools, "
            "which no Hugging Face sequence classifier computes (use `bam predict` instead)"
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


@torch.inference_mode()
def _check_same_outputs(predictor: Predictor, head: str, hf: PreTrainedModel) -> None:
    """Run both models on sample pairs and single texts; refuse unless the outputs agree."""
    model = predictor.model
    model.eval()
    hf.eval()
    device = next(model.parameters()).device
    for texts in (CHECK_TEXTS, (CHECK_TEXTS[0],)):
        inputs = predictor.tokenizer(*texts, padding=True, return_tensors="pt").to(device)
        expected = model(**inputs, groups=None)[head]
        try:
            got = hf(**inputs).logits
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


def export_hf(
    model_dir: str | Path,
    task: str,
    out_dir: str | Path,
    *,
    trust_remote_code: bool = False,
    predictor: Predictor | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir``: a Hugging Face sequence-classification model for one head of the model.

    ``task`` is a head name or a task name/alias (AX exports the MNLI head). A folder that holds
    something is replaced only with ``overwrite``; atomically, and only after the exported model
    was checked to match bam's outputs.
    """
    _check_out_dir(Path(out_dir), overwrite)
    predictor = predictor or Predictor.load(model_dir, device="cpu", trust_remote_code=trust_remote_code)
    head = predictor.head_for(task)
    spec = predictor.model.head_specs[head]
    config = _hf_config(predictor, spec)
    try:
        hf = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as err:
        raise _unsupported(config.model_type, str(err).strip().splitlines()[0]) from None
    hf.to(next(predictor.model.parameters()).device)
    _load_exact(hf, _mapped_state(predictor, head, hf))
    _check_same_outputs(predictor, head, hf)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(str(tmp))  # safetensors: the default since transformers 4.35
        predictor.tokenizer.save_pretrained(str(tmp))
    return out_dir
