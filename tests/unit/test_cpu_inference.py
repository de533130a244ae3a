"""oneDNN linear layers for CPU inference: same outputs as the plain layers, the right fusions,
and the model left exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModel, BertConfig, DebertaV2Config, DistilBertConfig

from bam.cpu.onednn import OneDnnLinear, onednn_available, onednn_linears
from bam.data.features import Features
from bam.inference.forward import predict_outputs
from bam.model import BamModel, HeadSpec
from bam.tasks import get_task

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _model(config, pooling: str = "cls") -> BamModel:
    torch.manual_seed(0)
    heads = [HeadSpec.from_task(get_task("rte")), HeadSpec.from_task(get_task("stsb"))]
    return BamModel(AutoModel.from_config(config), heads, pooling=pooling).eval()


def _inputs(rows: int = 3, width: int = 9) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[0, width // 2 :] = 0
    return {"input_ids": torch.randint(3, 90, (rows, width)), "attention_mask": mask}


@pytest.mark.parametrize(
    "config, pooling",
    [
        (BertConfig(**SMALL), "cls"),
        (BertConfig(**SMALL), "mean"),
        (BertConfig(**SMALL, hidden_act="relu"), "cls"),
        (BertConfig(**SMALL, hidden_act="gelu_new"), "cls"),  # tanh GELU of its own: not fused
        (DebertaV2Config(**SMALL, relative_attention=True, position_buckets=8), "mean"),
        (DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64), "mean"),
    ],
    ids=["bert", "bert-mean", "bert-relu", "bert-gelu-new", "deberta-v2", "distilbert"],
)
def test_outputs_equal_the_plain_layers(config, pooling: str) -> None:
    model, inputs = _model(config, pooling), _inputs()
    with torch.inference_mode():
        expected = model(**inputs)
        with onednn_linears(model) as used:
            assert used
            assert not any(type(m) is nn.Linear for m in model.modules())
            got = model(**inputs)
    for task in expected:
        assert torch.allclose(got[task], expected[task], atol=1e-5), task


def test_exact_gelu_and_relu_are_fused_into_the_matmul() -> None:
    for act, attr in (("gelu", "gelu"), ("relu", "relu")):
        model = _model(BertConfig(**SMALL, hidden_act=act))
        block = model.encoder.encoder.layer[0].intermediate
        with onednn_linears(model):
            assert isinstance(block.dense, OneDnnLinear) and block.dense.activation == attr
            assert isinstance(block.intermediate_act_fn, nn.Identity)
    model = _model(BertConfig(**SMALL, hidden_act="gelu_new"))
    block = model.encoder.encoder.layer[0].intermediate
    with onednn_linears(model):
        assert block.dense.activation == "none" and not isinstance(block.intermediate_act_fn, nn.Identity)


def test_the_model_is_restored_even_after_an_error() -> None:
    model = _model(BertConfig(**SMALL))
    before = dict(model.named_modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), onednn_linears(model):
        raise RuntimeError("boom")
    assert dict(model.named_modules()) == before
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_nothing_is_swapped_when_training_in_another_dtype_or_turned_off(monkeypatch) -> None:
    model = _model(BertConfig(**SMALL))
    with onednn_linears(model.train()) as used:
        assert not used and any(type(m) is nn.Linear for m in model.modules())
    with onednn_linears(model.eval().double()) as used:
        assert not used
    monkeypatch.setenv("BAM_ONEDNN", "0")
    with onednn_linears(model.float()) as used:
        assert not used


def test_predict_outputs_are_the_same_with_and_without(monkeypatch) -> None:
    model = _model(BertConfig(**SMALL))
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 20, size=40)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(3, 90, size=int(offsets[-1])).astype(np.int32)
    features = Features(ids, np.zeros(len(ids), dtype=np.int8), offsets)
    fast = predict_outputs(model, features, "rte", pad_id=0, batch_size=8)
    monkeypatch.setenv("BAM_ONEDNN", "0")
    plain = predict_outputs(model, features, "rte", pad_id=0, batch_size=8)
    assert np.allclose(fast, plain, atol=1e-5)


def test_the_self_check_leaves_torch_seeded_stream_alone() -> None:
    onednn_available.cache_clear()
    torch.manual_seed(5)
    assert onednn_available()
    after_check = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after_check)


def test_a_torch_whose_private_ops_changed_falls_back_to_plain_layers(monkeypatch) -> None:
    def changed(self, x):
        raise RuntimeError("_linear_pointwise() got an unexpected argument")

    monkeypatch.setattr(OneDnnLinear, "forward", changed)
    onednn_available.cache_clear()
    try:
        model = _model(BertConfig(**SMALL))
        with onednn_linears(model) as used:
            assert not used and any(type(m) is nn.Linear for m in model.modules())
    finally:
        onednn_available.cache_clear()


def test_subclasses_of_linear_are_left_alone() -> None:
    class Scaled(nn.Linear):  # e.g. an adapter that computes something else
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    model = _model(BertConfig(**SMALL))
    plain = model.heads["rte"][1]
    model.heads["rte"][1] = Scaled(plain.in_features, plain.out_features)
    inputs = _inputs()
    with torch.inference_mode():
        expected = model(**inputs)["rte"]
        with onednn_linears(model):
            assert type(model.heads["rte"][1]) is Scaled
            assert torch.allclose(model(**inputs)["rte"], expected, atol=1e-5)


def test_an_autocast_inside_the_forward_falls_back_to_plain_layers() -> None:
    """accelerate wraps a mixed-precision model's forward in autocast, so bf16 activations reach
    the fp32-only oneDNN layers: they once failed with "could not create a primitive descriptor";
    they now compute what the plain layers do under the same autocast."""
    model = _model(BertConfig(**SMALL))
    inputs = _inputs()
    groups = {"rte": torch.arange(3)}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(**inputs, groups=groups)["rte"]
        with onednn_linears(model) as fused:
            assert fused
            got = model(**inputs, groups=groups)["rte"]
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected)
