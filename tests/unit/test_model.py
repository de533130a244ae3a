"""Encoder families with tiny random configs: forward shapes, layer-wise multipliers, save/load."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, BertConfig, DebertaV2Config, ElectraConfig, RobertaConfig

from bam.errors import BamError
from bam.model import MODEL_FILE, BamModel, HeadSpec, build_model, load_bam_model, save_bam_model
from bam.tasks import get_task
from bam.train.optim import build_optimizer, layerwise_multipliers

SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 120,
    "max_position_embeddings": 64,
}
FAMILIES = {
    "bert": lambda: BertConfig(**SMALL),
    "roberta": lambda: RobertaConfig(**SMALL, pad_token_id=1, type_vocab_size=1),
    "electra": lambda: ElectraConfig(**SMALL, embedding_size=16),
    "deberta-v2": lambda: DebertaV2Config(  # with v3's norm of the relative embeddings, xlarge's conv
        **SMALL,
        relative_attention=True,
        position_buckets=8,
        type_vocab_size=0,
        norm_rel_ebd="layer_norm",
        conv_kernel_size=3,
    ),
}
HEADS = [
    HeadSpec.from_task(get_task("rte")),
    HeadSpec.from_task(get_task("stsb")),
    HeadSpec.from_task(get_task("mnli")),
]


def _model(family: str, pooling: str = "cls") -> BamModel:
    torch.manual_seed(0)
    return BamModel(AutoModel.from_config(FAMILIES[family]()), HEADS, pooling=pooling)


def _inputs(batch: int = 3, length: int = 7) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 100, (batch, length))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shapes_and_groups(family: str) -> None:
    model = _model(family).eval()
    out = model(**_inputs())
    assert out["rte"].shape == (3, 2) and out["mnli"].shape == (3, 3) and out["stsb"].shape == (3,)
    groups = {"rte": torch.tensor([0, 2]), "stsb": torch.tensor([1])}
    partial = model(**_inputs(), groups=groups)
    assert set(partial) == {"rte", "stsb"} and partial["rte"].shape == (2, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_layerwise_multipliers_follow_depth(family: str) -> None:
    model = _model(family)
    mult = layerwise_multipliers(model, 0.9)
    n = 3
    for name, value in mult.items():
        if name.startswith("heads."):
            assert value == 1.0
        elif ".layer.0." in name:
            assert value == pytest.approx(0.9 ** (n + 2 - 1))
        elif ".layer.2." in name:
            assert value == pytest.approx(0.9 ** (n + 2 - 3))
        elif "word_embeddings" in name or name.startswith("encoder.encoder.LayerNorm."):
            assert value == pytest.approx(0.9 ** (n + 2))  # DeBERTa's norm of the relative embeddings
        elif name.startswith("encoder.encoder.conv."):
            assert value == pytest.approx(0.9 ** (n + 2 - 1))  # joins the first layer's output
        elif "pooler" in name:
            assert value == pytest.approx(0.9)
    assert set(layerwise_multipliers(model, 1.0).values()) == {1.0}


def test_optimizer_groups_carry_scaled_rates_and_no_decay_on_bias_and_norm() -> None:
    model = _model("bert")
    optimizer = build_optimizer(model, 1e-4, 0.01, 0.9)
    mult = layerwise_multipliers(model, 0.9)
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        lr, decay = by_param[id(param)]
        assert lr == pytest.approx(1e-4 * mult[name])
        assert decay == (0.0 if param.ndim == 1 else 0.01), name


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_mean_pooling_ignores_padding(pooling: str) -> None:
    model = _model("bert", pooling).eval()
    inputs = _inputs()
    padded = model(**inputs)["stsb"][0]
    alone = model(**{k: v[:1, :5] for k, v in inputs.items()})["stsb"][0]
    assert torch.allclose(padded, alone, atol=1e-5)
    assert (model.encoder.pooler is None) == (pooling == "mean")


@pytest.mark.parametrize(("family", "pooling"), [("bert", "cls"), ("bert", "mean"), ("deberta-v2", "cls")])
def test_save_load_round_trip_is_exact(family: str, pooling: str, tmp_path) -> None:
    from transformers import AutoTokenizer

    from bam.model import resolve_encoder_path

    model = _model(family, pooling).eval()
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm-l6"))
    save_bam_model(model, tokenizer, tmp_path / "m", {"note": "x"})
    loaded, _, meta = load_bam_model(tmp_path / "m", device="cpu")
    assert meta["note"] == "x" and loaded.pooling == pooling
    saved = load_file(str(tmp_path / "m" / MODEL_FILE))
    for name, tensor in loaded.state_dict().items():
        if name in saved:
            assert torch.equal(tensor, saved[name]), name
    inputs = _inputs()
    for task, out in model(**inputs).items():
        assert torch.allclose(out, loaded(**inputs)[task], atol=1e-6)


@pytest.mark.parametrize(("pooling", "resolved"), [("auto", "mean"), ("cls", "cls"), ("mean", "mean")])
def test_packaged_encoder_pools_as_it_was_trained(pooling: str, resolved: str) -> None:
    # all-MiniLM-L6-v2 is a sentence-transformers model: its 1_Pooling/config.json says mean.
    model, tokenizer = build_model(
        "minilm-l6",
        [get_task("rte")],
        random_init=True,
        overrides={
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        pooling=pooling,
    )
    assert model.pooling == resolved
    assert (model.encoder.pooler is not None) == (resolved == "cls")
    assert tokenizer.is_fast


def test_auto_pooling_is_cls_without_a_sentence_transformers_folder(tmp_path) -> None:
    from bam.model import resolve_pooling

    assert resolve_pooling(str(tmp_path), "auto") == "cls"
    assert resolve_pooling("bert-large-uncased", "auto") == "cls"  # a hub id: no network touched


def test_default_device_is_this_process_gpu_when_there_is_one(monkeypatch) -> None:
    """Teacher outputs and evaluation load through it: on a GPU machine they must not run on the CPU."""
    from bam.model import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert default_device() == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert default_device() == torch.device("cuda", 0)


def test_more_processes_than_gpus_is_refused_in_words(monkeypatch) -> None:
    """Seen on an H100: `torchrun --nproc_per_node=2` on one GPU sent process 1 to cuda:1."""
    from bam.model import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(BamError, match=r"LOCAL_RANK 1: this machine shows 1 GPU\(s\).*at most 1 process"):
        default_device()
