"""A stage's key holds what decides its weights: the precision that ran, not logging or threads;
folders trained under the keys of earlier versions are still found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bam.cli.app import main
from bam.config.train import TrainConfig, build_dataclass
from bam.precision import resolve_precision
from bam.train.keys import run_keys

pytestmark = pytest.mark.slow


def _run(out: Path, *overrides: str) -> dict:
    assert main(["run", "--preset", "smoke", "--output", str(out), "--quiet", *overrides]) == 0
    return json.loads((out / "results.json").read_text())


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "stages").glob("*/train_done.json"))]


def test_settings_that_leave_the_weights_alone_retrain_nothing_and_old_keys_are_found(tmp_path) -> None:
    out = tmp_path / "run"
    first = _run(out, "train.precision=fp32")
    assert {r["precision"] for r in _records(out)} == {"fp32"}
    # TensorBoard on, other checkpoint and evaluation batch sizes, threads: nothing trains again.
    changed = ["train.log_with=[tensorboard]", "train.checkpoint_every=5", "train.eval_batch_size=3"]
    again = _run(out, "train.precision=fp32", "train.num_threads=1", *changed)
    assert again["details"]["stages_trained"] == []
    assert again["methods"] == first["methods"]

    # The smoke preset's non-default log_with and checkpoint_every were in the keys before they
    # left them: make the folders look as bam made them then, and they are found again.
    stages = sorted((out / "stages").iterdir(), key=lambda p: not p.name.startswith(("multi", "bam")))
    for folder in stages:  # students first: their teacher-output paths still lead to the teachers
        config = build_dataclass(TrainConfig, json.loads((folder / "train_config.json").read_text()), "stage")
        today, legacy = run_keys(config)
        assert folder.name.endswith(today)
        done = json.loads((folder / "train_done.json").read_text())
        (folder / "train_done.json").write_text(json.dumps({**done, "run_key": legacy}))
        folder.rename(folder.with_name(folder.name.removesuffix(today) + legacy))
    old = _run(out, "train.precision=fp32")
    assert old["details"]["stages_trained"] == []
    assert old["methods"] == first["methods"]


def test_a_mixed_precision_launcher_trains_and_evaluates_without_crashing(tmp_path, monkeypatch) -> None:
    """``accelerate launch --mixed_precision bf16`` (this environment variable) once crashed the
    first dev evaluation inside the oneDNN layers; ``auto`` now follows it, and the stage record
    says what ran and why."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    out = tmp_path / "bf16"
    results = _run(out)
    records = _records(out)
    assert {(r["precision"], r["precision_reason"]) for r in records} == {
        ("bf16", "ACCELERATE_MIXED_PRECISION=bf16")
    }
    assert all(len(r["history"]) == 2 for r in records)  # both epochs evaluated
    assert set(results["methods"]) == {"single", "multi", "bam"}
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    # On a machine whose auto is bf16, the same stages are this run's; elsewhere they are not.
    same = resolve_precision("auto", torch.device("cpu")).name == "bf16"
    assert (_run(out)["details"]["stages_trained"] == []) == same


def test_an_fp32_run_is_not_silently_retrained_in_the_precision_auto_picks(
    tmp_path, monkeypatch, capsys
) -> None:
    from bam import precision as precision_module

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))  # auto: fp32 here
    out = tmp_path / "run"
    _run(out)
    capsys.readouterr()
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))  # auto: bf16
    assert main(["run", "--preset", "smoke", "--output", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "trained in fp32, and precision: auto now picks bf16" in error and "train.precision=fp32" in error
    assert _run(out, "train.precision=fp32")["details"]["stages_trained"] == []  # as the message says
