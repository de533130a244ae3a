"""The after-training commands as a user runs them: inspect, predict, submit, export, report."""

from __future__ import annotations

import json
import zipfile

import pytest
from transformers import AutoModelForSequenceClassification

from bam.cli.app import main
from bam.data.load import default_data_dir
from bam.model import build_model, save_bam_model
from bam.tasks import get_task
from tests.helpers import TINY


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cli") / "run"
    model, tokenizer = build_model(
        "minilm-l6",
        [get_task(t) for t in ("rte", "stsb", "cola")],
        random_init=True,
        overrides=TINY,
        pooling="cls",  # exportable to a Hugging Face sequence classifier
    )
    save_bam_model(model, tokenizer, folder / "model", {"train_config": {"max_length": 64}})
    return folder


def test_data_inspect_json_counts_the_vendored_files(capsys) -> None:
    assert main(["data", "inspect", str(default_data_dir()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"]["rte"]["train"] == {
        "rows": 2490,
        "labels": {"entailment": 1249, "not_entailment": 1241},
    }
    assert report["tasks"]["cola"]["dev"]["rows"] == 1043
    assert report["tasks"]["stsb"]["dev"]["labels"] == {}


def test_predict_file_to_jsonl(model_dir, tmp_path) -> None:
    source = tmp_path / "pairs.tsv"
    source.write_text(
        "index\tsentence1\tsentence2\n7\tA man sleeps.\tA person rests.\n8\tIt rains.\tIt is dry.\n"
    )
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(model_dir), "--task", "rte", "--input", str(source),
                 "--output", str(out), "--quiet"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["7", "8"]
    for row in rows:
        assert row["label"] in {"entailment", "not_entailment"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)


def test_submit_export_and_errors(model_dir, tmp_path, capsys) -> None:
    zip_path = tmp_path / "glue.zip"
    assert main(["submit", "--model", str(model_dir), "--out", str(zip_path)]) == 0
    names = set(zipfile.ZipFile(zip_path).namelist())
    assert names == {"RTE.tsv", "STS-B.tsv", "CoLA.tsv"}
    assert "missing MNLI-m.tsv" in capsys.readouterr().out

    assert main(["export", "--model", str(model_dir), "--task", "rte", "--out", str(tmp_path / "hf")]) == 0
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf")
    assert hf.config.id2label == {0: "entailment", 1: "not_entailment"}

    assert main(["export", "--model", str(model_dir), "--task", "mnli", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bam: error:") and "\n" not in err and "mnli" in err


def test_report_compares_runs(tmp_path, capsys) -> None:
    for name, bam_score in (("a", 70.0), ("b", 72.0)):
        run = tmp_path / name
        run.mkdir()
        methods = {"single": {"rte": 60.0, "avg": 60.0}, "bam": {"rte": bam_score, "avg": bam_score}}
        (run / "results.json").write_text(json.dumps({"metric": "bam_avg", "methods": methods}))
    assert main(["report", "--compare-only", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    table = capsys.readouterr().out
    assert "a · BAM (teacher annealing) | 70.00" in table and "b · BAM (teacher annealing) | 72.00" in table
    assert main(["report", str(tmp_path / "missing")]) == 2
    capsys.readouterr()
    (tmp_path / "a" / "results.json").write_text('{"metric": "bam_avg", "meth')  # cut off mid-write
    for args in (["report", str(tmp_path / "a")], ["report", "--compare-only", str(tmp_path / "a")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err == f"bam: error: {tmp_path / 'a' / 'results.json'}: unreadable (JSONDecodeError)\n"
