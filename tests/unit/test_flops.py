"""One FLOP count: from a model's parameters, its encoder config, or the published sizes agree."""

from __future__ import annotations

import pytest
from transformers import BertConfig

from bam.errors import BamError
from bam.flops import PUBLISHED_SIZES, config_flop_model, encoder_flop_model, flop_model, shape_flop_model
from bam.model import build_model
from bam.tasks import get_task
from tests.helpers import TINY


def test_the_shape_formula_counts_the_layers_a_model_has() -> None:
    model, _ = build_model("minilm-l6", [get_task("rte")], random_init=True, overrides=dict(TINY))
    counted = flop_model(model)
    from_config = config_flop_model(BertConfig(**TINY))
    assert counted.per_token == from_config.per_token  # every layer parameter, exactly
    assert (counted.hidden, counted.layers) == (from_config.hidden, from_config.layers) == (64, 2)
    assert counted.per_sequence == 64 * 2 + 2  # bam pools without a pooler: the rte head alone
    assert from_config.per_sequence == 64 * 64  # a BERT pooler's weight


def test_flops_and_the_plan_estimate() -> None:
    model = shape_flop_model(layers=2, hidden=8, intermediate=16)
    assert model.per_token == 2 * (4 * 64 + 2 * 128 + 9 * 8 + 16)
    assert model.parameters == model.per_token + 64
    forward = 2 * model.per_token * 7 + 2 * 64 * 2 + 4 * (9 + 16) * 8 * 2  # lengths 3 and 4
    assert model.flops([3, 4], train=False) == forward
    assert model.flops([3, 4], train=True) == 3 * forward
    assert model.estimate(7.0) == 6 * model.parameters * 7.0


def test_a_size_is_found_offline_or_refused_by_name() -> None:
    model, source = encoder_flop_model("bert-large-uncased")  # not on this machine: the table
    assert source == "published size (config not available offline)"
    assert model == shape_flop_model(*PUBLISHED_SIZES["bert-large-uncased"])
    assert round(model.parameters / 1e6) == 303  # what the glue-paper plan prints
    local, source = encoder_flop_model("minilm-l6", dict(TINY))  # the packaged encoder's config
    assert (source, local) == ("model config", config_flop_model(BertConfig(**TINY)))
    with pytest.raises(BamError, match=r"^model 'no/such-model': config not available offline"):
        encoder_flop_model("no/such-model")
