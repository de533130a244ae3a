"""One count of an encoder's FLOPs, for the plan (``bam run --dry-run``), logs and benchmarks.

A BERT-like encoder's matmuls cost 2 FLOPs per parameter per token forward (embeddings are
lookups: not counted), plus attention's 4·L²·d per layer and sequence; a training step (forward
and backward) costs three times its forward. The parameters come from a model itself
(:func:`flop_model`), from its encoder config, or, offline and with no config at hand, from a
small table of published sizes (:func:`encoder_flop_model`): no network is ever needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import AutoConfig

from bam.errors import BamError
from bam.model import resolve_encoder_path

# (layers, hidden, intermediate) of common encoders, for planning without network access.
PUBLISHED_SIZES = {
    "bert-large-uncased": (24, 1024, 4096),
    "bert-large-cased": (24, 1024, 4096),
    "bert-base-uncased": (12, 768, 3072),
    "bert-base-cased": (12, 768, 3072),
    "roberta-large": (24, 1024, 4096),
    "roberta-base": (12, 768, 3072),
    "google/electra-large-discriminator": (24, 1024, 4096),
    "google/electra-base-discriminator": (12, 768, 3072),
    "microsoft/deberta-v3-large": (24, 1024, 4096),
    "microsoft/deberta-v3-base": (12, 768, 3072),
}


@dataclass(frozen=True)
class FlopModel:
    """Parameter counts of a BERT-like encoder as FLOP counting needs them.

    ``per_token``: the transformer layers' parameters (every token goes through them);
    ``per_sequence``: what runs once per sequence ([CLS] pooler and task heads);
    embeddings are lookups and are not counted.
    """

    per_token: int
    per_sequence: int
    hidden: int
    layers: int

    @property
    def parameters(self) -> int:
        """Parameters that cost FLOPs (embeddings aside)."""
        return self.per_token + self.per_sequence

    def flops(self, lengths: Sequence[int], train: bool) -> float:
        """Matmul FLOPs over sequences of these real (non-pad) lengths.

        Forward: 2·params per token + attention 4·L²·d per layer (QKᵀ and AV); a training step
        (forward + backward) is three times that.
        """
        tokens = float(sum(lengths))
        squares = float(sum(int(n) * int(n) for n in lengths))
        forward = 2 * self.per_token * tokens + 2 * self.per_sequence * len(lengths)
        forward += 4 * squares * self.hidden * self.layers
        return 3 * forward if train else forward

    def estimate(self, tokens: float, train: bool = True) -> float:
        """:meth:`flops` when only the number of tokens is known (a plan): every parameter
        counted per token, attention left out: 6 × parameters × tokens for training."""
        return (6 if train else 2) * self.parameters * tokens


def shape_flop_model(layers: int, hidden: int, intermediate: int) -> FlopModel:
    """A BERT layer's parameters from its shape: attention's four h×h projections, the h×i and
    i×h feed-forward, their biases and two LayerNorms (9h + i); once per sequence, a BERT
    pooler's h×h (bam's own models pool without one and add small heads: a plan that counts it
    per token, as ``bam run --dry-run`` always has, is about 1% high for minilm-l6)."""
    per_layer = 4 * hidden * hidden + 2 * hidden * intermediate + 9 * hidden + intermediate
    return FlopModel(layers * per_layer, hidden * hidden, hidden, layers)


def config_flop_model(config: Any) -> FlopModel:
    """From an encoder config (``transformers`` ``PretrainedConfig`` or anything with its names)."""
    return shape_flop_model(config.num_hidden_layers, config.hidden_size, config.intermediate_size)


def encoder_flop_model(model: str, encoder_overrides: dict[str, Any] | None = None) -> tuple[FlopModel, str]:
    """The FLOP model of the encoder ``model`` names (a TrainConfig's ``model``), and where its
    size came from: its config from a local folder or the hub cache (never the network), else
    the published sizes."""
    try:
        encoder = AutoConfig.from_pretrained(
            resolve_encoder_path(model), local_files_only=True, **(encoder_overrides or {})
        )
        return config_flop_model(encoder), "model config"
    except (OSError, ValueError):
        if model not in PUBLISHED_SIZES:
            raise BamError(
                f"model {model!r}: config not available offline and size not known; "
                "run once with network access or use a local folder"
            ) from None
        return shape_flop_model(*PUBLISHED_SIZES[model]), "published size (config not available offline)"


def flop_model(model: Any) -> FlopModel:
    """Count a :class:`bam.model.BamModel`'s (or any ``*ForSequenceClassification``'s) parameters."""
    per_token = per_sequence = 0
    for name, param in model.named_parameters():
        if "embeddings" in name:
            continue
        if ".layer." in name:
            per_token += param.numel()
        else:  # pooler, classifier / task heads
            per_sequence += param.numel()
    config = model.config if hasattr(model, "config") else model.encoder.config
    return FlopModel(per_token, per_sequence, config.hidden_size, config.num_hidden_layers)
