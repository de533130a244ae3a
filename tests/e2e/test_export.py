"""Hugging Face export: plain transformers loads the folder and gives bam's logits and labels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
from bam.inference import export as export_module
from bam.inference.export import export_hf, export_model
from bam.inference.predict import Predictor
from bam.model import BamModel, HeadSpec, resolve_encoder_path, save_bam_model
from bam.tasks import get_task
from tests.e2e.test_export_card import _card, _trained_like
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
    done = export_model(folder, "rte", tmp_path / "onnx")  # auto: what transformers cannot, ONNX can
    assert done.format == "onnx" and "ElectraClassificationHead" in done.reason
    assert (done.path / "model.onnx").is_file()


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


def test_mean_pooled_model_is_refused_as_a_transformers_folder(tmp_path: Path) -> None:
    """No transformers class mean-pools: asked for one, the export says so (auto makes ONNX instead)."""
    folder = save_tiny_model(tmp_path / "model", ["rte"], pooling="mean")
    with pytest.raises(BamError, match=r"mean-pools.*--format onnx"):
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
    with pytest.raises(
        BamError, match="mine: folder is not empty and holds no model export; use --overwrite"
    ):
        export_hf(bert_dir, "rte", folder)
    assert afile.read_text() == "mine" and (folder / "x").read_text() == "mine"
    export_hf(bert_dir, "rte", folder, overwrite=True)
    assert not (folder / "x").exists() and (folder / "model.safetensors").is_file()
    monkeypatch.chdir(folder)
    for here in ("", ".", ".."):
        with pytest.raises(BamError, match="give a new folder"):
            export_hf(bert_dir, "rte", here, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]


# --- every pooling, every head, a model card, the Hub ---------------------------------------------

# Runs in a fresh interpreter that cannot import bam (nor torch or transformers): the README's own
# snippet, then the answers for PAIRS as JSON on the last line.
SERVE = """
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bam", "torch", "transformers"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, Refuse())
try:
    import bam
except ImportError:
    pass
else:
    raise SystemExit("the guard let bam in")
exec(compile(sys.stdin.read(), "README.md", "exec"))
print(json.dumps(predict(json.loads(sys.argv[1]))))
"""


def _snippet(folder: Path) -> str:
    """The README's python block, pointed at the folder, exactly as a user copies it."""
    body = _card(folder)[1]
    code = body.split("```python\n", 1)[1].split("```", 1)[0]
    code, found = re.subn(r'^folder = ".*?"', f"folder = {str(folder)!r}", code, count=1, flags=re.M)
    assert found == 1
    return code  # its own example call runs too: the answers are the last line printed


def _serve_without_bam(folder: Path, rows: list) -> dict:
    """The export served by onnxruntime + tokenizers in a subprocess where `import bam` fails."""
    done = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(rows)],
        input=_snippet(folder),
        capture_output=True,
        text=True,
        cwd=folder.parent,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_same(answers: list[dict], expected: list[dict]) -> None:
    assert len(answers) == len(expected)
    for got, want in zip(answers, expected, strict=True):
        assert got.keys() == want.keys()
        if "score" in want:
            assert abs(got["score"] - want["score"]) <= 1e-4
        else:
            assert got["label"] == want["label"]
            assert got["probabilities"].keys() == want["probabilities"].keys()
            assert all(abs(got["probabilities"][k] - v) <= 1e-4 for k, v in want["probabilities"].items())


@pytest.fixture(scope="module")
def mean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default encoder's pooling: what `bam run` trains by default."""
    return _trained_like(tmp_path_factory.mktemp("mean") / "model", ["rte", "stsb"], "mean")


LONG = " ".join(["a row longer than the model's max_length of 64 tokens"] * 12)
ROWS = [list(pair) for pair in PAIRS] + [[LONG, "short"]]


def test_mean_pooled_model_is_served_without_bam(mean_dir: Path, tmp_path: Path) -> None:
    """The default model's export: ONNX, served with onnxruntime + tokenizers as its README says,
    by an interpreter that cannot import bam, torch or transformers; bam's answers within 1e-4."""
    done = export_model(mean_dir, "rte", tmp_path / "rte-onnx")
    assert done.format == "onnx" and done.heads == ["rte"] and "mean-pools" in done.reason
    files = {p.name for p in done.path.iterdir()}
    assert {"model.onnx", "export.json", "tokenizer.json", "README.md"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    predictor = Predictor.load(mean_dir, device="cpu")
    served = _serve_without_bam(done.path, ROWS)
    assert list(served) == ["rte"]
    _assert_same(served["rte"], predictor.predict("rte", [tuple(r) for r in ROWS]))
    header, body = _card(done.path)
    assert header["library_name"] == "onnx" and header["pipeline_tag"] == "text-classification"
    assert "onnxruntime" in body and "pooling | `mean`" in body


def test_every_head_in_one_onnx_graph(mean_dir: Path, tmp_path: Path) -> None:
    done = export_model(mean_dir, "all", tmp_path / "all-onnx", format="onnx")
    assert done.heads == ["rte", "stsb"]
    spec = json.loads((done.path / "export.json").read_text())
    assert spec["heads"]["stsb"] == {"output": "stsb", "kind": "regression", "labels": []}
    assert spec["max_length"] == 64 and spec["pooling"] == "mean"
    predictor = Predictor.load(mean_dir, device="cpu")
    served = _serve_without_bam(done.path, ROWS)
    for head in ("rte", "stsb"):
        _assert_same(served[head], predictor.predict(head, [tuple(r) for r in ROWS]))


def test_onnx_outputs_that_differ_are_refused(
    mean_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bam.inference import export_onnx

    real = export_onnx.bam_outputs
    monkeypatch.setattr(export_onnx, "bam_outputs", lambda *a: real(*a) + 2e-4)
    with pytest.raises(BamError, match="head rte's outputs differ from bam's"):
        export_model(mean_dir, "rte", tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_every_head_as_a_bam_folder_for_predict(mean_dir: Path, tmp_path: Path, capsys) -> None:
    """`--task all`: one encoder, every head, as a bam folder that bam predict and Predictor load."""
    from bam.cli.app import main

    out = tmp_path / "all-bam"
    assert main(["export", "--model", str(mean_dir), "--task", "all", "--out", str(out)]) == 0
    assert "bam predict --model" in capsys.readouterr().out
    assert {"bam_model.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    original, copy = Predictor.load(mean_dir, device="cpu"), Predictor.load(out, device="cpu")
    assert copy.tasks == ["rte", "stsb"]
    for head in copy.tasks:
        assert copy.predict(head, PAIRS) == original.predict(head, PAIRS)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text_a": a, "text_b": b}) + "\n" for a, b in PAIRS))
    assert main(["predict", "--model", str(out), "--task", "stsb", "--input", str(rows), "-q"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["score"] for p in printed] == pytest.approx(
        [r["score"] for r in original.predict("stsb", PAIRS)]
    )
    header, body = _card(out)
    assert "library_name" not in header and "bam" in header["tags"]
    assert "Predictor.load" in body


def test_a_transformers_folder_holds_one_head(mean_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BamError, match=r"holds one head; this model has 2 \(rte, stsb\)"):
        export_model(mean_dir, "all", tmp_path / "hf", format="transformers")
    assert not (tmp_path / "hf").exists()
