"""Hugging Face export: plain transformers loads the folder and gives bam's logits and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    ElectraConfig,
    ElectraModel,
    RobertaConfig,
    RobertaModel,
    pipeline,
)

from bam.data.examples import Examples
from bam.errors import BamError
from bam.inference.export import export_hf
from bam.inference.predict import Predictor
from bam.model import BamModel, HeadSpec, resolve_encoder_path, save_bam_model
from bam.inference import export as export_module
from bam.tasks import get_task
from tests.helpers import PAIRS, save_tiny_model

SMALL = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("bert") / "model", ["rte", "stsb"])


def _bam_outputs(model_dir: Path, head: str) -> np.ndarray:
    """bam's own answer, through the shared inference path (sorted, padded batches)."""
    predictor = Predictor.load(model_dir, device="cpu")
    columns = ([a for a, _ in PAIRS], [b for _, b in PAIRS])
    examples = Examples(head, "x", columns, None, [str(i) for i in range(len(PAIRS))], "test")
    return predictor.outputs(head, examples, batch_size=2)


def _hf_logits(out_dir: Path) -> np.ndarray:
    """Plain transformers, nothing from bam: tokenizer + model from the exported folder."""
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out_dir).eval()
    enc = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.numpy()


def test_bert_classification_export(bert_dir: Path, tmp_path: Path) -> None:
    out = export_hf(bert_dir, "RTE", tmp_path / "rte-hf")
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    expected = _bam_outputs(bert_dir, "rte")
    assert np.allclose(_hf_logits(out), expected, atol=1e-5)

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    assert model.config.label2id == {"entailment": 0, "not_entailment": 1}
    classify = pipeline("text-classification", model=str(out))
    answers = classify([{"text": a, "text_pair": b} for a, b in PAIRS])
    labels = get_task("rte").labels
    probs = torch.softmax(torch.from_numpy(expected), -1).numpy()
    assert [a["label"] for a in answers] == [labels[i] for i in expected.argmax(-1)]
    assert np.allclose([a["score"] for a in answers], probs.max(-1), atol=1e-5)


def test_bert_regression_export(bert_dir: Path, tmp_path: Path) -> None:
    out = export_hf(bert_dir, "stsb", tmp_path / "stsb-hf")
    expected = _bam_outputs(bert_dir, "stsb")
    logits = _hf_logits(out)
    assert logits.shape == (len(PAIRS), 1)
    assert np.allclose(logits[:, 0], expected, atol=1e-5)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    # transformers >= 4.46 reads problem_type and returns the raw score; older ones apply a sigmoid
    # to any single-label head unless told not to (huggingface/transformers#34066).
    raw = {} if Version(transformers.__version__) >= Version("4.46") else {"function_to_apply": "none"}
    pairs = [{"text": a, "text_pair": b} for a, b in PAIRS]
    answers = pipeline("text-classification", model=str(out))(pairs, **raw)
    assert np.allclose([a["score"] for a in answers], expected, atol=1e-5)  # raw score, no sigmoid


def _custom_encoder_model(tmp_path: Path, encoder) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm-l6"))
    torch.manual_seed(0)
    model = BamModel(encoder, [HeadSpec.from_task(get_task("rte"))])
    return save_bam_model(model, tokenizer, tmp_path / "model")


def test_roberta_head_maps_exactly(tmp_path: Path) -> None:
    vocab = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm-l6")).vocab_size
    torch.manual_seed(0)
    encoder = RobertaModel(RobertaConfig(**SMALL, vocab_size=vocab, type_vocab_size=2, pad_token_id=0))
    folder = _custom_encoder_model(tmp_path, encoder)
    out = export_hf(folder, "rte", tmp_path / "hf")
    assert (
        type(AutoModelForSequenceClassification.from_pretrained(out)).__name__
        == "RobertaForSequenceClassification"
    )
    assert np.allclose(_hf_logits(out), _bam_outputs(folder, "rte"), atol=1e-5)


def test_electra_is_refused(tmp_path: Path) -> None:
    vocab = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm-l6")).vocab_size
    folder = _custom_encoder_model(
        tmp_path, ElectraModel(ElectraConfig(**SMALL, vocab_size=vocab, embedding_size=16))
    )
    with pytest.raises(BamError, match=r"export supports BERT-style encoders.*ElectraClassificationHead"):
        export_hf(folder, "rte", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_mismatching_outputs_are_refused(
    bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module._mapped_state

    def off_by_a_bit(predictor, head, hf):
        state = dict(real(predictor, head, hf))
        state["classifier.bias"] = state["classifier.bias"] + 0.01
        return state

    monkeypatch.setattr(export_module, "_mapped_state", off_by_a_bit)
    with pytest.raises(BamError, match="exported logits differ"):
        export_hf(bert_dir, "rte", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_mean_pooled_model_is_refused(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "model", ["rte"], pooling="mean")
    with pytest.raises(BamError, match="mean-pools"):
        export_hf(folder, "rte", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_unknown_head(bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BamError, match=r"head 'mnli'.*its tasks: rte, stsb"):
        export_hf(bert_dir, "ax", tmp_path / "hf")


def test_a_file_a_full_folder_or_the_working_folder_is_not_replaced_unasked(
    bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out` on a file or on a folder of the user's own silently replaced it (exit status 0)."""
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(BamError, match=r"notes\.txt: is a file"):
        export_hf(bert_dir, "rte", afile)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "x").write_text("mine")
    with pytest.raises(BamError, match="mine: folder is not empty and holds no model export; use --overwrite"):
        export_hf(bert_dir, "rte", folder)
    assert afile.read_text() == "mine" and (folder / "x").read_text() == "mine"
    export_hf(bert_dir, "rte", folder, overwrite=True)
    assert not (folder / "x").exists() and (folder / "model.safetensors").is_file()
    monkeypatch.chdir(folder)
    for here in ("", ".", ".."):
        with pytest.raises(BamError, match="give a new folder"):
            export_hf(bert_dir, "rte", here, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]
