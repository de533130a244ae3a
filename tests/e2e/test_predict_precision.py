"""A model trained in bf16 is answered in bf16 by predict, submit and bam.Predictor, as evaluation
scored it; ``precision=`` / ``--precision`` overrides it (evaluate's too), and an outer autocast
breaks nothing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bam import precision as precision_module
from bam.cli.app import main
from bam.config.train import TrainConfig, build_dataclass
from bam.data.examples import Examples
from bam.data.load import load_examples
from bam.errors import BamError
from bam.inference import evaluate as evaluate_module
from bam.inference.evaluate import load_eval_splits
from bam.inference.export import export_model
from bam.inference.forward import outputs_to_predictions, predict_outputs
from bam.inference.predict import Predictor
from bam.model import read_model_meta
from bam.precision import FP32, Precision, model_precision
from bam.tasks import get_task
from bam.train.loop import train
from tests.helpers import GLUE, PAIRS, TINY, save_tiny_model

EVAL_BATCH = 16
RTE_DEV = GLUE / "RTE" / "dev.tsv"


@pytest.fixture(autouse=True)
def _bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with bf16 units, whatever this one has (without them bf16 is emulated: slower, same)."""
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model trained for two steps in bf16 (its dev scores computed in bf16)."""
    values = {
        "model": "minilm-l6", "random_init": True, "encoder_overrides": dict(TINY), "max_length": 64,
        "batch_size": 8, "epochs": 1.0, "learning_rate": 1e-3, "log_with": [], "checkpoint_every": 0,
        "tasks": ["rte"], "train_cap": {"rte": 16}, "precision": "bf16", "pooling": "cls",
        "eval_batch_size": EVAL_BATCH,
    }  # fmt: skip
    run = tmp_path_factory.mktemp("bf16") / "run"
    train(build_dataclass(TrainConfig, values, "test"), run, quiet=True)
    assert read_model_meta(run / "model")["precision"] == "bf16"
    return run


def _evaluated(predictor: Predictor, precision: Precision) -> np.ndarray:
    """The dev outputs as bam evaluate computes them: its splits, its batch size, ``precision``."""
    split = load_eval_splits([get_task("rte")], None, predictor.tokenizer, predictor.max_length)[0]
    return predict_outputs(
        predictor.model, split.features, "rte", predictor.pad_id, EVAL_BATCH, precision=precision
    )


def _dev() -> Examples:
    task = get_task("rte")
    return load_examples(task, task.dev_splits[0], None)


def test_the_predictor_runs_in_the_precision_the_model_trained_in(bf16_run: Path) -> None:
    predictor = Predictor.load(bf16_run, device="cpu")
    assert predictor.precision.name == "bf16" and predictor.precision.reason.startswith("trained in bf16")
    as_trained = _evaluated(predictor, predictor.precision)
    np.testing.assert_array_equal(predictor.outputs("rte", _dev(), EVAL_BATCH), as_trained)
    assert not np.allclose(as_trained, _evaluated(predictor, FP32), atol=1e-5, rtol=0)  # bf16 did run


def test_an_explicit_precision_overrides_the_recorded_one(bf16_run: Path, monkeypatch) -> None:
    fp32 = Predictor.load(bf16_run, device="cpu", precision="fp32")
    assert (fp32.precision.name, fp32.precision.reason) == ("fp32", "asked for")
    np.testing.assert_array_equal(fp32.outputs("rte", _dev(), EVAL_BATCH), _evaluated(fp32, FP32))
    assert Predictor.load(bf16_run, device="cpu", precision="auto").precision.name == "bf16"
    with pytest.raises(BamError, match="fp16 needs a GPU"):
        Predictor.load(bf16_run, device="cpu", precision="fp16")
    with pytest.raises(BamError, match="precision: 'half' is not one of"):
        Predictor.load(bf16_run, device="cpu", precision="half")
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))  # no bf16 units
    assert Predictor.load(bf16_run, device="cpu").precision.name == "fp32"
    assert Predictor.load(bf16_run, device="cpu", precision="auto").precision.name == "fp32"
    malformed = model_precision({"precision": ["bf16"]}, torch.device("cpu"))
    assert (malformed.name, malformed.reason) == ("fp32", "none recorded with the model")


def test_cli_predict_and_submit_say_which_precision_ran(bf16_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--model", str(bf16_run), "--task", "rte", "--input", str(RTE_DEV),
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")]
    assert lines == ["precision: bf16 (trained in bf16; the CPU has AVX512_BF16)"]
    assert main([*args, "--precision", "fp32", "--quiet"]) == 0
    assert "precision" not in capsys.readouterr().err
    zip_path = tmp_path / "glue.zip"
    assert main(["submit", "--model", str(bf16_run), "--out", str(zip_path), "--precision", "fp32"]) == 0
    assert "precision: fp32 (asked for)" in capsys.readouterr().err.splitlines()
    assert "RTE.tsv" in zipfile.ZipFile(zip_path).namelist()
    assert main(["evaluate", "--model", str(bf16_run), "--output", str(tmp_path / "eval.json")]) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith("precision: bf16 (trained in bf16")


def test_bam_predict_gives_the_labels_bam_evaluate_scored(bf16_run: Path, tmp_path: Path, capsys) -> None:
    """Same precision and the same batches (--batch-size = the eval batch, under one chunk of rows):
    the same outputs, so the same labels as the dev predictions bam evaluate and training scored."""
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(bf16_run), "--task", "rte", "--input", str(RTE_DEV),
                 "--output", str(out), "--batch-size", str(EVAL_BATCH), "--quiet"]) == 0  # fmt: skip
    predicted = [json.loads(line) for line in out.read_text().splitlines()]
    predictor = Predictor.load(bf16_run, device="cpu")
    recorded = model_precision(read_model_meta(bf16_run / "model"), torch.device("cpu"))  # bam evaluate's
    evaluated = _evaluated(predictor, recorded)
    ids = [get_task("rte").labels.index(row["label"]) for row in predicted]
    assert ids == list(outputs_to_predictions(evaluated, "classification"))
    assert [row["probabilities"] for row in predicted] == [  # the very same outputs, not only labels
        row["probabilities"] for row in predictor.rows("rte", evaluated)
    ]
    assert main(["evaluate", "--model", str(bf16_run), "--output", str(tmp_path / "eval.json"), "-q"]) == 0
    gold = load_examples(get_task("rte"), "dev", None).labels
    accuracy = 100 * np.mean(np.array(ids) == gold)  # bam evaluate's score, from bam predict's labels
    scored = json.loads((tmp_path / "eval.json").read_text())["metrics"]["rte"]["dev"]
    assert scored["accuracy"] == pytest.approx(accuracy)


def test_bam_evaluate_takes_the_precision_bam_predict_takes(
    bf16_run: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bam evaluate --precision fp32`` scores a bf16 model in fp32: predict's stderr line, and the
    very outputs (so the score) of ``bam predict --precision fp32`` on the same dev rows."""
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(bf16_run), "--task", "rte", "--input", str(RTE_DEV), "--output",
                 str(out), "--batch-size", str(EVAL_BATCH), "--precision", "fp32"]) == 0  # fmt: skip
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")]
    computed: list[np.ndarray] = []

    def kept(*args, **kwargs) -> np.ndarray:  # what bam evaluate computed its score from
        computed.append(predict_outputs(*args, **kwargs))
        return computed[-1]

    monkeypatch.setattr(evaluate_module, "predict_outputs", kept)
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(bf16_run), "--output", str(report), "--precision", "fp32"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == said[0] == "precision: fp32 (asked for)"
    predicted = [json.loads(line) for line in out.read_text().splitlines()]
    predictor = Predictor.load(bf16_run, device="cpu", precision="fp32")
    assert [row["probabilities"] for row in predicted] == [
        row["probabilities"] for row in predictor.rows("rte", computed[0])
    ]
    bf16 = Predictor.load(bf16_run, device="cpu")
    assert not np.allclose(computed[0], _evaluated(bf16, bf16.precision), atol=1e-5, rtol=0)  # not bf16
    ids = [get_task("rte").labels.index(row["label"]) for row in predicted]
    accuracy = 100 * np.mean(np.array(ids) == load_examples(get_task("rte"), "dev", None).labels)
    scored = json.loads(report.read_text())["metrics"]["rte"]["dev"]["accuracy"]
    assert scored == pytest.approx(accuracy)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_bad_precision_is_one_error_line_and_writes_nothing(
    command: str, bf16_run: Path, tmp_path: Path, capsys
) -> None:
    """The same check for both commands: a value not in the list is one error line (argparse's
    message, without its usage block); fp16 on a CPU is bam's one line, before any row is read."""
    out = tmp_path / "out.json"
    args = [command, "--model", str(bf16_run), "--output", str(out)]
    args += ["--task", "rte", "--input", str(RTE_DEV)] if command == "predict" else []
    with pytest.raises(SystemExit) as exited:
        main([*args, "--precision", "half"])
    assert exited.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1  # argparse's wording of the choices varies between Python versions
    assert errors[0].startswith(f"bam {command}: error: argument --precision: invalid choice: 'half'")
    assert main([*args, "--precision", "fp16"]) == 2
    only = capsys.readouterr().err.splitlines()
    assert only == ["bam: error: precision: fp16 needs a GPU (on CPU use bf16 or fp32)"]
    assert not out.exists()


def test_an_outer_autocast_does_not_break_prediction(tmp_path: Path, bf16_run: Path) -> None:
    """User code or accelerate may predict inside ``torch.autocast("cpu", torch.bfloat16)``: an fp32
    model still runs in fp32 (oneDNN's fused layers are fp32-only), a bf16 one in bf16."""
    fp32 = Predictor.load(save_tiny_model(tmp_path / "fp32", ["rte"]), device="cpu")
    bf16 = Predictor.load(bf16_run, device="cpu")
    expected = [p.predict("rte", PAIRS) for p in (fp32, bf16)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = [p.predict("rte", PAIRS) for p in (fp32, bf16)]
    assert fp32.precision.name == "fp32"
    assert got == expected


def test_export_checks_in_fp32_and_its_card_states_the_training_precision(bf16_run: Path, tmp_path) -> None:
    done = export_model(bf16_run, "rte", tmp_path / "hf", format="transformers")  # checked to 1e-4 in fp32
    card = (done.path / "README.md").read_text()
    assert "| precision | `bf16` (mixed precision: the weights are fp32) |" in card
    predictor = Predictor.load(bf16_run, device="cpu")  # bf16: the export checks a fp32 twin of it
    export_model(bf16_run, "rte", tmp_path / "given", format="transformers", predictor=predictor)
    assert predictor.precision.name == "bf16"
