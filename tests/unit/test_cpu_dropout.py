"""SFC64 dropout on CPU: dropout's distribution, torch's seeding, the right gradient, and an
attention path that equals Hugging Face's sdpa when nothing is dropped."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModel, BertConfig, DebertaV2Config

from bam.cpu import dropout as cpu_dropout
from bam.cpu.dropout import (
    ATTENTION,
    CpuDropout,
    keep_mask,
    sdpa_with_cpu_dropout,
    sfc64_dropout,
    use_cpu_dropout,
)
from bam.model import BamModel, HeadSpec
from bam.tasks import get_task

# transformers before pluggable attention (pyproject allows >= 4.45): only nn.Dropout is swapped.
needs_attention_interface = pytest.mark.skipif(
    cpu_dropout.AttentionInterface is None, reason="this transformers has no AttentionInterface"
)
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_rate_is_one_minus_p_and_the_mean_is_kept(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_000
    mask, scale = keep_mask(torch.Size([n]), p)
    kept = mask.double().mean().item()
    binomial_sd = (p * (1 - p) / n) ** 0.5
    assert abs(kept - (1 - p)) < 5 * binomial_sd
    assert scale == pytest.approx(1 / (1 - p), rel=1e-4)
    out = sfc64_dropout(torch.ones(n), p, training=True)
    assert abs(out.double().mean().item() - 1.0) < 5 * binomial_sd * scale
    assert out.unique().tolist() == pytest.approx([0.0, scale])


def test_masks_follow_torch_seed_and_differ_between_calls() -> None:
    torch.manual_seed(7)
    first, second = keep_mask(torch.Size([4096]), 0.3)[0], keep_mask(torch.Size([4096]), 0.3)[0]
    torch.manual_seed(7)
    again = keep_mask(torch.Size([4096]), 0.3)[0]
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_gradient_is_mask_times_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 48, requires_grad=True)
    out = sfc64_dropout(x, 0.25, training=True)
    out.backward(torch.full_like(out, 2.0))
    kept = out.detach() != 0
    scale = 65536 / (65536 - round(0.25 * 65536))
    assert torch.allclose(out.detach(), x.detach() * kept * scale)
    assert torch.allclose(x.grad, 2.0 * kept * scale)


def test_p_just_below_one_keeps_a_sliver_without_dividing_by_zero() -> None:
    mask, scale = keep_mask(torch.Size([1000]), 0.9999999)
    assert scale == 65536 and mask.sum() <= 5


def test_not_training_or_p_zero_is_identity() -> None:
    x = torch.randn(10, 10)
    assert sfc64_dropout(x, 0.5, training=False) is x
    assert torch.equal(CpuDropout(0.0).train()(x), x)


@needs_attention_interface
def test_attention_equals_sdpa_when_nothing_is_dropped() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(2)
    q, k, v = (torch.randn(3, 2, 7, 16) for _ in range(3))
    visible = torch.ones(3, 1, 7, 7, dtype=torch.bool)
    visible[0, :, :, 5:] = False  # row 0 has two padding tokens
    module = nn.Module()
    module.is_causal = False
    # p = 1e-9 rounds to no dropped level: the mask keeps everything at scale 1.
    ours, _ = sdpa_with_cpu_dropout(module, q, k, v, visible, dropout=1e-9, scaling=0.25)
    reference, _ = sdpa_attention_forward(module, q, k, v, visible, dropout=0.0, scaling=0.25)
    assert torch.allclose(ours, reference, atol=1e-6)
    additive = torch.zeros(3, 1, 7, 7).masked_fill(~visible, torch.finfo(torch.float32).min)
    ours_additive, _ = sdpa_with_cpu_dropout(module, q, k, v, additive, dropout=1e-9, scaling=0.25)
    assert torch.allclose(ours_additive, reference, atol=1e-6)


def _bam_model(config) -> BamModel:
    torch.manual_seed(0)
    return BamModel(AutoModel.from_config(config), [HeadSpec.from_task(get_task("rte"))])


@needs_attention_interface
def test_model_swap_keeps_weights_and_eval_outputs() -> None:
    plain, swapped = _bam_model(BertConfig(**SMALL)), _bam_model(BertConfig(**SMALL))
    use_cpu_dropout(swapped)
    assert swapped.encoder.config._attn_implementation == ATTENTION
    assert not any(type(m) is nn.Dropout for m in swapped.modules())
    assert plain.state_dict().keys() == swapped.state_dict().keys()
    ids = torch.randint(3, 100, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        expected = plain.eval()(ids, mask)["rte"]
        assert torch.allclose(swapped.eval()(ids, mask)["rte"], expected, atol=1e-6)
    swapped.train()
    loss = swapped(ids, mask)["rte"].sum()
    loss.backward()
    assert all(p.grad is not None for p in swapped.encoder.encoder.parameters())


def test_models_without_the_attention_interface_keep_their_attention() -> None:
    model = _bam_model(DebertaV2Config(**SMALL, relative_attention=True, position_buckets=8))
    before = model.encoder.config._attn_implementation
    use_cpu_dropout(model)
    assert model.encoder.config._attn_implementation == before
    assert isinstance(model.heads["rte"][0], CpuDropout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_gradient_equal_the_product_with_the_mask_bit_for_bit(dtype: torch.dtype) -> None:
    """The masked select keeps the product's exact values (kept: x · scale; dropped: 0), so a
    switch between the two cannot change a trained model, in fp32 or bf16."""
    torch.manual_seed(3)
    x = torch.randn(8, 16, 24, dtype=dtype, requires_grad=True)
    grad = torch.randn(8, 16, 24, dtype=dtype)
    torch.manual_seed(4)
    out = sfc64_dropout(x, 0.1, training=True)
    out.backward(grad)
    torch.manual_seed(4)
    mask, scale = keep_mask(x.shape, 0.1)
    assert torch.equal(out.detach(), torch.mul(x.detach(), mask).mul_(scale))
    assert torch.equal(x.grad, torch.mul(grad, mask).mul_(scale))
    assert out.dtype == dtype and x.grad.dtype == dtype
