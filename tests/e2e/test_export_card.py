"""Every export's model card (the Hub's metadata header, what training recorded) and `--push-to-hub`,
against a patched Hub client or a local port where nothing listens: nothing leaves the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoTokenizer

from bam.inference.export import export_hf
from bam.model import save_bam_model
from bam.tasks import get_task
from tests.helpers import save_tiny_model


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("bert") / "model", ["rte"])


def _meta(tasks: list[str], **settings) -> dict:
    """What `bam train` writes into bam_model.json: its config and the kept checkpoint's dev scores."""
    from bam.config.train import TrainConfig, config_to_dict

    config = config_to_dict(TrainConfig(tasks=tasks, max_length=64, **{"random_init": True, **settings}))
    scores = {"rte": 61.37, "stsb": 84.12, "sst2": 90.5}
    dev = {"step": 40, "epoch": 2.0, "scores": {t: scores[t] for t in tasks}, "bam_avg": 72.75}
    return {"train_config": config, "dev": dev}


def _trained_like(folder: Path, tasks: list[str], pooling: str, **settings) -> Path:
    """A tiny model saved as `bam train` saves one (random weights, recorded config and dev scores)."""
    from bam.model import build_model
    from tests.helpers import TINY

    torch.manual_seed(0)
    model, tokenizer = build_model(
        "minilm-l6", [get_task(t) for t in tasks], random_init=True, overrides=dict(TINY), pooling=pooling
    )
    return save_bam_model(model, tokenizer, folder, _meta(tasks, **settings))


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def test_model_card_states_method_scores_base_and_licence(tmp_path: Path) -> None:
    """The Hub header and the card's text come from what training recorded, never from guesses."""
    folder = _trained_like(
        tmp_path / "student",
        ["rte", "stsb"],
        "cls",
        teacher_outputs={"rte": ["t/rte.safetensors"], "stsb": ["t/stsb.safetensors"]},
        lambda_schedule="linear",
        learning_rate=1e-4,
        train_cap={"rte": 1000},
        random_init=False,  # as the card of a model fine-tuned from MiniLM's weights reads
    )
    out = export_hf(folder, "rte", tmp_path / "hf")
    header, body = _card(out)
    assert header["license"] == "apache-2.0"  # upstream's licence, not the pip package's MIT
    assert header["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert header["datasets"] == ["nyu-mll/glue"] and header["language"] == "en"
    assert header["library_name"] == "transformers"
    assert "knowledge-distillation" in header["tags"] and "multi-task" in header["tags"]
    (result,) = header["model-index"][0]["results"]
    assert result["dataset"] == {
        "name": "GLUE RTE",
        "type": "nyu-mll/glue",
        "config": "rte",
        "split": "validation",
    }
    assert result["metrics"][0]["type"] == "accuracy" and result["metrics"][0]["value"] == 61.37
    assert "BAM, multi-task, distilled from single-task teachers (teacher annealing" in body
    assert "| learning_rate | `0.0001` |" in body and "| RTE | accuracy | 61.37 |" in body
    assert "step 40" in body and "MIT" in body and "Apache-2.0" in body
    assert "random weights" not in body and "rows kept: rte 1000" in body
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.model_max_length == 64  # truncation=True cuts where bam does


def test_model_card_of_an_unknown_base_says_so(tmp_path: Path) -> None:
    from bam.inference.model_card import base_model, method

    assert base_model({"model": "someone/encoder"}) == (
        "someone/encoder",
        None,
        "[someone/encoder](https://huggingface.co/someone/encoder)",
    )
    assert method({"tasks": ["rte"], "lambda_schedule": "gold"}) == "Single: one task, gold labels"
    assert method(
        {"tasks": ["rte", "mrpc"], "teacher_outputs": {"rte": ["x"]}, "lambda_schedule": "gold"}
    ) == ("Multi: one encoder, every task, gold labels")
    folder = _trained_like(tmp_path / "m", ["rte"], "cls")
    meta = json.loads((folder / "bam_model.json").read_text())
    meta["train_config"].update(model="someone/encoder", random_init=False)
    (folder / "bam_model.json").write_text(json.dumps(meta))
    header, body = _card(export_hf(folder, "rte", tmp_path / "hf"))
    assert header["license"] == "other" and header["base_model"] == "someone/encoder"
    assert "bam does not know the base model's licence" in body

    meta["train_config"].update(model="minilm-l6", random_init=True)  # a smoke model: no weights from it
    (folder / "bam_model.json").write_text(json.dumps(meta))
    header, body = _card(export_hf(folder, "rte", tmp_path / "hf", overwrite=True))
    assert "base_model" not in header and header["license"] == "apache-2.0"  # its tokenizer's
    assert "no pretrained weights" in body and "random weights" in body


class _FakeHub:
    """huggingface_hub.HfApi's two calls, recorded; nothing leaves the machine."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import huggingface_hub

        self.calls: list[tuple[str, dict]] = []
        self.uploaded: set[str] = set()

        def create_repo(api, repo_id, **kwargs):
            self.calls.append(("create_repo", {"repo_id": repo_id, "token": api.token, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(api, **kwargs):
            self.calls.append(("upload_folder", kwargs))
            self.uploaded = {p.name for p in Path(kwargs["folder_path"]).iterdir()}

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)


def _no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


def test_push_to_hub_uploads_the_export(bert_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from bam.cli.app import main

    hub = _FakeHub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    out = tmp_path / "hf"
    argv = ["export", "--model", str(bert_dir), "--task", "rte", "--out", str(out)]
    assert main([*argv, "--push-to-hub", "someone/bam-rte", "--private"]) == 0
    assert capsys.readouterr().out.strip().endswith("published: https://huggingface.co/someone/bam-rte")
    (create, args), (upload, kwargs) = hub.calls
    assert create == "create_repo" and args["exist_ok"] is True and args["private"] is True
    assert args["token"] == "hf_test_token" and args["repo_type"] == "model"
    assert upload == "upload_folder" and kwargs["repo_id"] == "someone/bam-rte"
    assert Path(kwargs["folder_path"]) == out and {"README.md", "model.safetensors"} <= hub.uploaded


def test_push_to_hub_without_a_token_or_a_network(
    bert_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from huggingface_hub import constants

    from bam.cli.app import main

    _no_token(monkeypatch, tmp_path)
    hub = _FakeHub(monkeypatch)
    argv = ["export", "--model", str(bert_dir), "--task", "rte", "--out", str(tmp_path / "hf")]
    assert main([*argv, "--push-to-hub", "someone/bam-rte"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("bam: error: --push-to-hub someone/bam-rte: no Hugging Face token")
        and err.count("\n") == 1
    )
    assert hub.calls == [] and (tmp_path / "hf" / "README.md").is_file()  # the export itself is kept

    monkeypatch.undo()  # the real client again, sent to a local port where nothing listens
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    assert main([*argv, "--overwrite", "--push-to-hub", "someone/bam-rte"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "bam: error: --push-to-hub someone/bam-rte: the Hub refused or could not be reached"
    )
    assert err.count("\n") == 1
    assert main([*argv, "--overwrite", "--push-to-hub", "not a repo!"]) == 2
    assert "not a repository id" in capsys.readouterr().err
