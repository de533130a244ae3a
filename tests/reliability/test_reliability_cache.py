"""Caches and checkpoints are keyed by what produced them, and damage is detected, never trusted.

Tokenized data, teacher outputs, finished runs and ``bam run`` stages are rebuilt when their file
is damaged or what produced them changed; a damaged checkpoint is a one-line error; a crash in
the middle of replacing a checkpoint folder resumes from the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bam.cli.app import main
from bam.config.run import load_run_config
from bam.config.train import TrainConfig, build_dataclass
from bam.data.features import load_or_tokenize, tokenize
from bam.data.prepare import training_examples
from bam.distill.store import load_teacher_outputs
from bam.errors import BamError
from bam.experiment.run import progress_line, run
from bam.fileio import exclusive_folder
from bam.model import load_encoder
from bam.tasks import get_task
from bam.train import checkpoint, keys, loop
from bam.train.checkpoint import checkpoint_progress
from bam.train.keys import run_key
from bam.train.loop import train
from tests import helpers
from tests.helpers import TINY

GLUE = helpers.GLUE


def _config(**values) -> TrainConfig:
    base = {
        "tasks": ["rte"], "random_init": True, "encoder_overrides": dict(TINY), "max_length": 32,
        "train_cap": {"rte": 32}, "batch_size": 4, "epochs": 2.0, "learning_rate": 1e-3, "log_with": [],
        "checkpoint_every": 2, "num_threads": 1,
    }  # fmt: skip
    return build_dataclass(TrainConfig, {**base, **values}, "test")


def _weights(folder: Path) -> bytes:
    return (folder / "model" / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run that the damaged and resumed runs below must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(_config(), out, quiet=True)
    return out


class Crash(Exception):
    """Stands for a kill: raised right after a checkpoint is committed."""


def _crash_after_checkpoint(monkeypatch: pytest.MonkeyPatch, at_step: int) -> None:
    real = loop.save_checkpoint

    def save_then_crash(run, done, started):
        real(run, done, started)
        if done >= at_step:
            raise Crash

    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)


def _interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_step: int = 6) -> Path:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _crash_after_checkpoint(patch, at_step)
        with pytest.raises(Crash):
            train(_config(), out, quiet=True)
    assert (out / "checkpoint" / "state.json").is_file()
    return out


def test_tokenization_cache_damaged_is_rebuilt(tmp_path: Path) -> None:
    _, tokenizer = load_encoder("minilm-l6", random_init=True, overrides=TINY)
    examples = training_examples(get_task("rte"), None, 16)
    fresh = tokenize(examples, tokenizer, 32)
    load_or_tokenize(examples, tokenizer, 32, tmp_path)
    (entry,) = (tmp_path / "features").iterdir()
    ids = entry / "input_ids.npy"
    ids.write_bytes(ids.read_bytes()[: ids.stat().st_size // 2])  # truncated
    (entry / "meta.json").write_text("{")  # and unreadable
    again = load_or_tokenize(examples, tokenizer, 32, tmp_path)
    assert np.array_equal(again.input_ids, fresh.input_ids) and np.array_equal(again.offsets, fresh.offsets)
    assert np.array_equal(np.load(ids), fresh.input_ids)  # the entry on disk was rewritten


def test_tokenization_cache_with_flipped_bytes_is_rebuilt(tmp_path: Path) -> None:
    _, tokenizer = load_encoder("minilm-l6", random_init=True, overrides=TINY)
    examples = training_examples(get_task("rte"), None, 16)
    fresh = tokenize(examples, tokenizer, 32)
    load_or_tokenize(examples, tokenizer, 32, tmp_path)
    (entry,) = (tmp_path / "features").iterdir()
    data = bytearray((entry / "input_ids.npy").read_bytes())
    data[-8] ^= 0xFF  # same size, one token id changed
    (entry / "input_ids.npy").write_bytes(bytes(data))
    again = load_or_tokenize(examples, tokenizer, 32, tmp_path)
    assert np.array_equal(again.input_ids, fresh.input_ids)


def test_an_interrupted_stage_shows_how_far_it_got(tmp_path: Path, monkeypatch) -> None:
    """What `bam run --jobs` prints for the stages its workers are training (no bars there)."""
    out = _interrupted(tmp_path, monkeypatch)
    progress = checkpoint_progress(out)
    assert progress["step"] == 6 and progress["total_steps"] == 16 and progress["elapsed"] > 0
    left = progress["elapsed"] / 6 * (16 - 6) / 60
    line = progress_line([out, tmp_path / "not-started"])
    assert line == f"progress: run step 6/16 (~{left:.0f} min left); 1 not yet at a checkpoint"


def test_damaged_checkpoint_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:
    out = _interrupted(tmp_path, monkeypatch)
    tensors = out / "checkpoint" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:1000])
    with pytest.raises(BamError, match=r"checkpoint: damaged checkpoint"):
        train(_config(), out, quiet=True)
    (out / "checkpoint" / "state.json").write_text('{"format": "bam-checkpoint/1", "prog')
    argv = ["train", "--task", "rte", "--output", str(out), "-q", "random_init=true", "max_length=32",
            f"encoder_overrides={TINY}".replace("'", ""), "train_cap={rte: 32}", "batch_size=4", "epochs=2",
            "learning_rate=1e-3", "log_with=[]", "checkpoint_every=2", "num_threads=1"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bam: error: ") and str(out / "checkpoint") in err
    assert "Traceback" not in err and not (out / "train_done.json").exists()


def test_crash_while_replacing_the_checkpoint_resumes_from_the_previous_one(
    tmp_path: Path, monkeypatch, reference: Path
) -> None:
    out = _interrupted(tmp_path, monkeypatch)
    # The state a kill between atomic_dir's two renames leaves: the committed copy moved aside,
    # a half-written new one next to it, and no `checkpoint` folder.
    aside = out / ".checkpoint.x1.old"
    aside.mkdir()
    (out / "checkpoint").rename(aside / "previous")
    (out / ".checkpoint.x2.tmp").mkdir()
    (out / ".checkpoint.x2.tmp" / "tensors.safetensors").write_bytes(b"half")
    train(_config(), out, quiet=True)
    assert _weights(out) == _weights(reference)
    done, ref = (json.loads((x / "train_done.json").read_text()) for x in (out, reference))
    assert done["history"] == ref["history"] and done["run_key"] == ref["run_key"]
    assert sorted(p.name for p in out.iterdir()) == ["model", "train_config.json", "train_done.json"]


def test_a_folder_another_process_writes_is_refused_and_left_alone(tmp_path: Path, reference: Path) -> None:
    """A second writer would delete the first one's temporary files and race its checkpoints."""
    out = tmp_path / "run"
    with exclusive_folder(out):  # stands for another bam process training here
        in_progress = out / ".checkpoint.x1.tmp"
        in_progress.mkdir()
        with pytest.raises(BamError, match=rf"in use by another bam process \(pid {os.getpid()}[ )]") as err:
            train(_config(), out, quiet=True)
        assert str(err.value).startswith(f"{out}: ") and in_progress.is_dir()
    train(_config(), out, quiet=True)  # the holder has gone, and so has its lock
    assert _weights(out) == _weights(reference)
    assert sorted(p.name for p in out.iterdir()) == ["model", "train_config.json", "train_done.json"]


def test_damaged_finished_run_is_trained_again(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "train_done.json").write_text('{"run_key": ')  # unreadable: not finished
    train(_config(), out, quiet=True)
    assert checkpoint.read_done(out)["run_key"] == checkpoint.read_done(reference)["run_key"]
    model = out / "model" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    assert checkpoint.finished_run(out) is None
    train(_config(), out, quiet=True)
    assert _weights(out) == _weights(reference)


def test_run_key_follows_data_model_and_teacher_outputs(tmp_path: Path) -> None:
    data = tmp_path / "glue"
    shutil.copytree(GLUE / "RTE", data / "RTE")
    config = _config(data_dir=str(data))
    key = run_key(config)
    assert run_key(_config(data_dir=str(data))) == key
    assert run_key(_config(data_dir=str(data), seed=14)) != key
    dev = data / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\tentailment\n", "\tnot_entailment\n", 1))  # one dev label
    assert run_key(config) != key
    key = run_key(config)
    train_file = data / "RTE" / "train.tsv"
    lines = train_file.read_text().splitlines(keepends=True)
    train_file.write_text("".join(lines[:1] + lines[2:]))  # one training row fewer
    assert run_key(config) != key
    key = run_key(config)
    model = tmp_path / "encoder"  # a local encoder folder: config and tokenizer (random_init)
    packaged = Path(keys.resolve_encoder_path("minilm-l6"))
    model.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(packaged / name, model / name)
    local = _config(data_dir=str(data), model=str(model))
    local_key = run_key(local)
    config_file = model / "config.json"
    config_file.write_text(config_file.read_text().replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    assert run_key(local) != local_key


def test_pipeline_rerecords_damaged_teacher_outputs_and_keeps_stages(tmp_path: Path) -> None:
    overrides = [
        "tasks=[rte]", "train.max_length=32", "train.num_threads=1", "train.train_cap={rte: 32}",
        f"train.encoder_overrides={TINY}".replace("'", ""),
    ]  # fmt: skip
    config = load_run_config("smoke", None, overrides)
    del config.methods["multi"]  # teachers and BAM are enough here
    out = tmp_path / "run"
    first = run(config, out, quiet=True)
    (outputs,) = (out / "stages").glob("teacher-rte-*/outputs-*.safetensors")
    outputs.write_bytes(outputs.read_bytes()[:-100])  # truncated
    again = run(config, out, quiet=True)
    assert again["details"]["stages_trained"] == []  # every stage reused, the student too
    assert again["methods"] == first["methods"]
    examples = training_examples(get_task("rte"), None, 32)
    load_teacher_outputs(
        outputs, task="rte", split="train", examples_fingerprint=examples.fingerprint(), rows=len(examples)
    )  # re-recorded, whole again
