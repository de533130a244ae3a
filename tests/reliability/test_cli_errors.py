"""Bad input through the ``bam`` command: one line naming the file and line or field, status 2.

Every case also checks that no traceback is printed and that nothing was left half-written: the
output folder is not created, or holds no results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bam.cli.app import main
from bam.config.train import TrainConfig
from bam.data.prepare import training_examples
from bam.distill.store import save_teacher_outputs
from bam.errors import BamError
from bam.fileio import exclusive_folder
from bam.tasks import get_task
from bam.train.loop import train
from tests import helpers
from tests.helpers import TINY

GLUE = helpers.GLUE
FOLDERS = {"rte": "RTE", "stsb": "STS-B", "mrpc": "MRPC"}
TINY_ARGS = [
    "random_init=true", f"encoder_overrides={TINY}".replace("'", ""), "max_length=32", "batch_size=8",
    "epochs=1", "log_with=[]", "num_threads=1",
]  # fmt: skip
RESULTS = ("train_done.json", "results.json", "model", "checkpoint", "train_config.json", "bam_run.json")


def _data(tmp_path: Path, task: str, mutate: Callable[[list[str]], list[str]] | None = None,
          split: str = "train", rows: int = 12) -> tuple[Path, Path]:  # fmt: skip
    """A GLUE folder with ``rows`` rows of ``task``'s train and dev files; ``mutate`` edits one."""
    root = tmp_path / "glue"
    for name in ("train", "dev"):
        lines = (GLUE / FOLDERS[task] / f"{name}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        lines = lines[: rows + 1]
        if mutate is not None and name == split:
            lines = mutate(lines)
        path = root / FOLDERS[task] / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines), encoding="utf-8")
    return root, root / FOLDERS[task] / f"{split}.tsv"


def _set_field(line_index: int, column: int, value: str) -> Callable[[list[str]], list[str]]:
    def mutate(lines: list[str]) -> list[str]:
        fields = lines[line_index].rstrip("\n").split("\t")
        fields[column] = value
        lines[line_index] = "\t".join(fields) + "\n"
        return lines

    return mutate


def _insert(line: str) -> Callable[[list[str]], list[str]]:
    """Insert ``line`` as the file's 4th line."""
    return lambda lines: [*lines[:3], line, *lines[3:]]


def _fails(
    capsys: pytest.CaptureFixture, argv: list[str], *needles: object, output: Path | None = None
) -> str:
    """Run ``bam argv``: status 2, one ``bam: error:`` line holding every needle, no results."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bam: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    if output is not None:
        assert not output.exists() or not any((output / name).exists() for name in RESULTS), list(
            output.iterdir()
        )
    return err


def _train(data: Path, out: Path, *extra: str, task: str = "rte") -> list[str]:
    return ["train", "--task", task, "--data-dir", str(data), "--output", str(out), "-q", *TINY_ARGS, *extra]


@pytest.mark.parametrize(
    ("task", "mutate", "split", "needles"),
    [
        ("rte", lambda rows: [rows[0].replace("label", "lable"), *rows[1:]], "train", ["line 2", "'label'"]),
        ("rte", _set_field(4, 3, "maybe"), "train", ["line 5", "unknown label 'maybe'"]),
        ("rte", _set_field(3, 3, "maybe"), "dev", ["line 4", "unknown label 'maybe'"]),
        ("stsb", _set_field(3, 9, "abc"), "train", ["line 4", "'abc' is not a number"]),
        ("stsb", _set_field(2, 9, "nan"), "train", ["line 3", "'nan' is not finite"]),
        ("stsb", _set_field(5, 9, "inf"), "dev", ["line 6", "'inf' is not finite"]),
        ("rte", lambda lines: lines[:1], "train", ["no rows"]),
        ("rte", lambda lines: lines[:1], "dev", ["no rows"]),
        ("rte", _insert("99\tone text\n"), "train", ["line 4", "2 fields"]),
        ("rte", _insert("99\ta\tb\tentailment\tx\n"), "train", ["line 4", "5 fields"]),
    ],
    ids=["missing-column", "unknown-label", "unknown-label-dev", "score-abc", "score-nan", "score-inf-dev",
         "empty-train", "empty-dev", "too-few-fields", "too-many-fields"],
)  # fmt: skip
def test_bad_data_file(tmp_path, capsys, task, mutate, split, needles) -> None:
    data, path = _data(tmp_path, task, mutate, split)
    out = tmp_path / "out"
    _fails(capsys, _train(data, out, task=task), path, *needles, output=out)


def test_missing_file_and_wrong_encoding(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    data, path = _data(tmp_path, "rte")
    path.unlink()
    _fails(capsys, _train(data, out), path, "file not found", output=out)
    latin = "7\tcaf\u00e9 cr\u00e8me\tna\u00efve\tentailment\n".encode("latin-1")
    data, path = _data(tmp_path, "rte")
    path.write_bytes(path.read_bytes() + latin)
    _fails(capsys, _train(data, out), path, "not UTF-8", "line 14", output=out)


def test_unknown_task_key_type_and_config_file(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    data, _ = _data(tmp_path, "rte")
    _fails(capsys, _train(data, out, task="nope"), "unknown task 'nope'", output=out)
    _fails(
        capsys, _train(data, out, "learnin_rate=1"), "unknown key learnin_rate", "learning_rate", output=out
    )
    _fails(capsys, _train(data, out, "batch_size=abc"), "batch_size must be int", output=out)
    _fails(capsys, _train(data, out, "batch_size=0"), "batch_size must be at least 1", output=out)
    _fails(capsys, _train(data, out, "learning_rate=.nan"), "learning_rate must be a positive", output=out)
    _fails(capsys, _train(data, out, "lambda_schedule=lineer"), "lambda_schedule must be one of", output=out)
    _fails(capsys, _train(data, out, "lambda_horizon=0"), "lambda_horizon must be in (0, 1]", output=out)
    _fails(
        capsys,
        _train(data, out, "sampling_boost={rte: 0}"),
        "sampling_boost.rte must be a positive",
        output=out,
    )
    _fails(
        capsys,
        _train(data, out, "sampling_boost={cola: 2}"),
        "sampling_boost.cola",
        "not one of the tasks",
        output=out,
    )
    _fails(capsys, _train(data, out, "ema_decay=1"), "ema_decay must be in [0, 1)", output=out)
    _fails(capsys, _train(data, out, "log_with=[tensorbord]"), "log_with", "tensorbord", output=out)
    config = tmp_path / "train.yaml"
    config.write_text("learning_rate: 1e-3\nbatch_sise: 3\n")
    _fails(
        capsys, [*_train(data, out), "--config", str(config)], config, "unknown key batch_sise", output=out
    )
    config.write_text("learning_rate: 1e-3\n")  # a sound file: an override's mistake is not blamed on it
    err = _fails(capsys, [*_train(data, out, "epochs=abc"), "--config", str(config)], "command line: epochs")
    assert str(config) not in err
    config.write_text("epochs: [1\n")
    _fails(
        capsys, [*_train(data, out), "--config", str(config)], config, "line 2", "invalid YAML", output=out
    )
    _fails(capsys, [*_train(data, out), "--config", str(tmp_path)], tmp_path, "cannot read", output=out)
    _fails(
        capsys, ["run", "--preset", "smoke", "--output", str(out), "student.epochs=abc"], "epochs", output=out
    )
    _fails(capsys, ["run", "--preset", "smoke", "--output", str(out), "methods.bam.lamda_schedule=linear"],
           "methods.bam", "lamda_schedule", output=out)  # fmt: skip


def test_custom_task_yaml_with_a_typo_or_an_escaping_name(tmp_path, capsys) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("text\tlabel\ngood film\tpos\nbad film\tneg\n")
    task = folder / "task.yaml"
    body = "name: mine\nformat: tsv\nfiles: {train: train.tsv, dev: dev.tsv}\n"
    body += "label_column: label\nlabels: [pos, neg]\n"
    out = tmp_path / "out"
    task.write_text(body + "text_colums: text\n")
    _fails(capsys, ["train", "--task", str(task), "--output", str(out), *TINY_ARGS],
           task, "line 6", "text_colums", "text_columns", output=out)  # fmt: skip
    task.write_text(body.replace("name: mine", "name: ../../evil") + "text_columns: text\n")
    _fails(capsys, ["train", "--task", str(task), "--output", str(out), *TINY_ARGS],
           task, "line 1", "name", output=out)  # fmt: skip


def _teacher_file(path: Path, task: str, rows_of: str, data: Path, fingerprint: str | None = None) -> Path:
    examples = training_examples(get_task(rows_of), data)
    outputs = np.zeros((len(examples), 2), dtype=np.float32)
    save_teacher_outputs(
        path, outputs, task=task, split="train", examples_fingerprint=fingerprint or examples.fingerprint(),
        teacher_hash="t", tokenizer="tok", max_length=32, kind="logits",
    )  # fmt: skip
    return path


def test_teacher_outputs_of_another_task_or_data_version(tmp_path, capsys) -> None:
    data, _ = _data(tmp_path, "rte")
    _data(tmp_path, "mrpc")
    out = tmp_path / "out"
    linear = ["lambda_schedule=linear"]
    mrpc = _teacher_file(tmp_path / "mrpc.safetensors", "mrpc", "mrpc", data)
    _fails(
        capsys, _train(data, out, *linear, f"teacher_outputs.rte=[{mrpc}]"), mrpc, "task 'mrpc'", output=out
    )
    old = _teacher_file(tmp_path / "old.safetensors", "rte", "rte", data, fingerprint="0" * 64)
    _fails(capsys, _train(data, out, *linear, f"teacher_outputs.rte=[{old}]"), old, "other data", output=out)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(mrpc.read_bytes()[:50])
    _fails(capsys, _train(data, out, *linear, f"teacher_outputs.rte=[{damaged}]"), damaged, output=out)
    _fails(capsys, _train(data, out, *linear), "teacher_outputs.rte", output=out)
    _fails(capsys, _train(data, out, f"teacher_outputs.mrpc=[{mrpc}]"), "teacher_outputs.mrpc", output=out)


def test_a_folder_that_is_not_a_model(tmp_path, capsys) -> None:
    data, _ = _data(tmp_path, "rte")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model")
    _fails(capsys, ["evaluate", "--model", str(junk)], junk, "bam_model.json")
    _fails(capsys, ["evaluate", "--model", str(tmp_path / "none")], tmp_path / "none")
    out = tmp_path / "out"
    _fails(
        capsys, _train(data, out, "random_init=false", "--model", str(junk)), junk, "config.json", output=out
    )
    (junk / "config.json").write_text("{}")
    _fails(capsys, _train(data, out, "--model", str(junk)), junk, "model_type", output=out)
    gone = tmp_path / "gone"  # said "Repo id must use alphanumeric chars ..." (taken for a hub id)
    _fails(capsys, _train(data, out, "--model", str(gone)), f"model {gone}: no such folder", output=out)


def test_output_folder_of_something_else_is_refused_unless_overwrite(tmp_path, capsys) -> None:
    data, _ = _data(tmp_path, "rte")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    _fails(capsys, _train(data, other), other, "--overwrite")
    _fails(capsys, ["run", "--preset", "smoke", "--output", str(other)], other, "--overwrite")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    _fails(capsys, _train(data, other / "notes.txt"), other / "notes.txt", "is a file")
    _fails(capsys, ["run", "--preset", "smoke", "--output", str(other / "notes.txt")], "is a file")
    dry = ["run", "--preset", "smoke", "--dry-run", "--output"]
    _fails(capsys, [*dry, str(other / "notes.txt")], "is a file")
    _fails(capsys, [*dry, str(other)], other, "--overwrite")  # what the run itself would say
    assert (other / "notes.txt").read_text() == "mine"

    done = tmp_path / "done"
    assert main(_train(data, done)) == 0
    finished = {p.name: p.stat().st_mtime_ns for p in done.rglob("*")}
    _fails(capsys, _train(data, done, "learning_rate=1"), done, "other settings", "learning_rate")
    dev = data / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text(encoding="utf-8").replace("\tentailment\n", "\tnot_entailment\n", 1))
    _fails(capsys, _train(data, done), done, "other data")
    _fails(capsys, ["run", "--preset", "smoke", "--output", str(done)], done, "holds no bam run")
    assert {p.name: p.stat().st_mtime_ns for p in done.rglob("*")} == finished  # untouched
    _fails(capsys, ["evaluate", "--model", str(done), "--task", "mrpc"], done / "model", "no head for task")
    evaluate = ["evaluate", "--model", str(done), "--data-dir", str(data), "--output", str(other)]
    _fails(capsys, evaluate, other, "cannot write")
    with exclusive_folder(done):  # another process is training here: --overwrite must not delete it
        _fails(capsys, [*_train(data, done, "learning_rate=1"), "--overwrite"], done, "in use by another bam")
    assert {p.name: p.stat().st_mtime_ns for p in done.rglob("*")} == finished
    assert main([*_train(data, done, "learning_rate=1"), "--overwrite"]) == 0


def test_names_cannot_leave_the_output_folder(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _fails(capsys, ["run", "--preset", "../presets/smoke"], "unknown preset")
    dots = tmp_path / "...yaml"  # its stem is ".."
    dots.write_text("tasks: [rte]\n")
    _fails(capsys, ["run", "--config", str(dots)], "run name '..'")
    out = tmp_path / "out"
    _fails(capsys, ["run", "--preset", "smoke", "--output", str(out), "methods={../../x: {}}"], "'../../x'",
           output=out)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["...yaml"]


def test_a_real_process_prints_one_line_and_exits_2(tmp_path) -> None:
    """Outside pytest's capture too: no warning or log line joins the error, and the status is 2."""
    data, path = _data(tmp_path, "stsb", _set_field(3, 9, "abc"))
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    done = subprocess.run(
        [sys.executable, "-m", "bam", *_train(data, tmp_path / "out", task="stsb")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"bam: error: {path} line 4: score 'abc' is not a number\n"
    assert done.stdout == "" and not (tmp_path / "out").exists()


def test_the_busy_cores_check_waits_until_the_data_is_read(tmp_path, monkeypatch) -> None:
    """`bam train` looks at the cores only when it will train: never before a data error, nor for a
    run that is already finished (its warning would be noise there)."""
    from bam.cpu import machine

    checks: list[str] = []
    monkeypatch.setattr(machine, "warn_if_cpus_busy", lambda: checks.append("checked"))
    bad, _ = _data(tmp_path / "bad", "stsb", _set_field(3, 9, "abc"))
    assert main(_train(bad, tmp_path / "bad-out", task="stsb")) == 2 and checks == []
    good, _ = _data(tmp_path / "good", "rte")
    assert main(_train(good, tmp_path / "out")) == 0 and checks == ["checked"]
    assert main(_train(good, tmp_path / "out")) == 0 and checks == ["checked"]


def test_bam_run_checks_the_cores_once_and_only_before_a_stage_trains(tmp_path, monkeypatch) -> None:
    """`bam run` likewise: not before a data error, once for all its stages, not for a finished run;
    with --jobs, once in the parent before its workers start."""
    from bam.cpu import machine

    checks: list[str] = []
    monkeypatch.setattr(machine, "warn_if_cpus_busy", lambda: checks.append("checked"))
    run = [
        "run",
        "--preset",
        "smoke",
        "-q",
        "tasks=[rte]",
        "methods={single: {}, bam: {lambda_schedule: linear}}",
    ]
    bad, _ = _data(tmp_path / "bad", "rte", _set_field(4, 3, "maybe"))
    assert main([*run, f"train.data_dir={bad}", "--output", str(tmp_path / "bad-out")]) == 2 and checks == []
    good, _ = _data(tmp_path / "good", "rte")
    run += [f"train.data_dir={good}", "--output", str(tmp_path / "out")]
    assert main(run) == 0 and checks == ["checked"]  # two stages, one check
    assert main(run) == 0 and checks == ["checked"]
    assert main([*run, "student.epochs=1", "--jobs", "2"]) == 0 and checks == ["checked", "checked"]


def test_more_processes_than_gpus_ends_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    data, _ = _data(tmp_path, "rte")
    assert main(_train(data, tmp_path / "out")) == 2
    assert "bam: error: LOCAL_RANK 1: this machine shows 1 GPU(s)" in capsys.readouterr().err


def test_a_local_run_never_imports_datasets() -> None:
    """`datasets` is only for hub data: a machine without it (or with a broken one) runs local files."""
    script = (
        "import sys; from bam.cli.app import main; "
        "code = main(['run', '--preset', 'smoke', '--dry-run']); "
        "print(code, 'datasets' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr


def _edit_meta(folder: Path, edit: Callable[[dict], None]) -> None:
    meta = json.loads((folder / "bam_model.json").read_text())
    edit(meta)
    (folder / "bam_model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda m: m.pop("encoder_config"), ["bam_model.json", "missing field 'encoder_config'"]),
        (lambda m: m["encoder_config"].update(model_type="nosuchmodel"), ["bam_model.json", "nosuchmodel"]),
        (lambda m: m.update(heads="rte"), ["bam_model.json"]),
        (lambda m: m["heads"][0].update(num_outputs="two"), ["bam_model.json", "num_outputs must be 2"]),
        (lambda m: m["heads"][0].update(kind="weird"), ["bam_model.json", "'weird'"]),
        (lambda m: m.update(dropout="x"), ["bam_model.json"]),
        (lambda m: m.update(train_config="x"), ["bam_model.json", "max_length"]),
        (lambda m: m["encoder_config"].update(hidden_size=128), ["model.safetensors", "size mismatch"]),
    ],
)
def test_a_damaged_model_description_is_named(tmp_path, capsys, edit, needles) -> None:
    """A hand-edited or damaged bam_model.json gave KeyError/TypeError tracebacks (or hundreds of
    lines of model types) in evaluate, predict, export and submit."""
    from tests.helpers import save_tiny_model

    folder = save_tiny_model(tmp_path / "model", ["rte"])
    _edit_meta(folder, edit)
    err = _fails(capsys, ["evaluate", "--model", str(folder)], *needles)
    assert len(err) < 400
    export = ["export", "--model", str(folder), "--task", "rte", "--out", str(tmp_path / "hf")]
    _fails(capsys, export, *needles)
    assert not (tmp_path / "hf").exists()


def test_damaged_tokenizer_files_are_named(tmp_path, capsys) -> None:
    from tests.helpers import save_tiny_model

    folder = save_tiny_model(tmp_path / "model", ["rte"])
    (folder / "tokenizer.json").write_text('{"version": ')
    (folder / "tokenizer_config.json").write_text("{bad")
    _fails(capsys, ["evaluate", "--model", str(folder)], folder, "tokenizer")


def test_seeds_out_of_range_twice_named_tasks_and_too_long_inputs(tmp_path, capsys) -> None:
    """Each failed deep inside numpy, the loss or the encoder, after train_config.json was written,
    so the corrected command was then refused as "other settings"."""
    data, _ = _data(tmp_path, "rte")
    out = tmp_path / "out"
    _fails(capsys, _train(data, out, "seed=-1"), "seed must be a whole number from 0 to 2**32", output=out)
    _fails(capsys, _train(data, out, f"seed={2**64}"), "seed must be", output=out)
    _fails(capsys, [*_train(data, out), "--task", "RTE"], "tasks: rte is named twice", output=out)
    _fails(capsys, _train(data, out, "max_length=1000"), "max_length: 1000", "(512 tokens)", output=out)
    # transformers checks a config's fields (huggingface_hub's strict dataclasses) or fails building it
    _fails(capsys, _train(data, out, "encoder_overrides.hidden_size=abc"), "cannot load encoder", output=out)
    assert not out.exists()
    dry = ["run", "--preset", "smoke", "--dry-run"]
    _fails(capsys, [*dry, "seeds=[-1]"], "seeds: -1")
    _fails(capsys, [*dry, "seeds=[1,1]"], "seeds: 1 is named twice")
    _fails(capsys, [*dry, "tasks=[rte,RTE]"], "tasks: rte is named twice")
    # it trained every stage, then failed for want of an average to compare
    _fails(capsys, [*dry, "tasks=[wnli]"], "tasks: none of wnli counts towards the BAM average")


def test_a_batch_size_below_one_is_refused(tmp_path, capsys) -> None:
    """evaluate and predict ran no batch at all and wrote zero logits as results (status 0)."""
    from tests.helpers import save_tiny_model

    folder = save_tiny_model(tmp_path / "model", ["rte"])
    out = tmp_path / "scores.json"
    for size in ("0", "-3"):
        _fails(capsys, ["evaluate", "--model", str(folder), "--batch-size", size, "--output", str(out)],
               f"--batch-size must be at least 1, got {size}")  # fmt: skip
        _fails(capsys, ["predict", "--model", str(folder), "--task", "rte", "--input", str(out),
                        "--batch-size", size], "--batch-size")  # fmt: skip
    assert not out.exists()


def test_per_task_settings_must_name_a_task_by_its_own_name(tmp_path, capsys) -> None:
    """Settings are looked up by a task's own name: ``train_cap.SST-2`` trained on every row, and
    a boost of a task the student does not train failed only when the student started, after
    hours of teachers."""
    data, _ = _data(tmp_path, "rte")
    out = tmp_path / "out"
    _fails(capsys, _train(data, out, "train_cap.RTE=8"), "train_cap.RTE", "write rte", output=out)
    _fails(capsys, _train(data, out, "both_orders=[mrpc]"), "both_orders.mrpc", "tasks: rte", output=out)
    assert not out.exists()
    dry = ["run", "--preset", "smoke", "--dry-run", "--output", str(out)]
    _fails(capsys, [*dry, "train.train_cap.SST-2=100"], "train.train_cap.SST-2:", "write sst2")
    _fails(capsys, [*dry, "student.both_orders=[stsbb]"], "student.both_orders.stsbb:", "tasks: ")
    boost = "methods.bam.sampling_boost.cola"
    _fails(capsys, [*dry, f"{boost}=2"], f"{boost}:", "not one of the tasks")
    _fails(capsys, [*dry, "train.sampling_boost.rte=2"], "train.sampling_boost.rte:")  # teachers: mrpc, stsb
    per_task_boost = ["methods.bam.per_task=true", "methods.bam.sampling_boost.rte=2"]
    _fails(capsys, [*dry, *per_task_boost], "methods.bam.sampling_boost.rte:")
    # a preset's cap of a GLUE task the run leaves out is kept, not refused
    assert main([*dry, "tasks=[rte]", "train.train_cap.sst2=100"]) == 0
    assert not out.exists()


def test_the_python_train_refuses_a_task_written_by_another_of_its_names(tmp_path) -> None:
    """``train()`` cannot know every task a ``bam run`` stage's caps may name, but a GLUE task
    written by another of its names is a typo wherever it appears."""
    data, _ = _data(tmp_path, "rte")
    out = tmp_path / "out"
    for setting in ({"train_cap": {"RTE": 8}}, {"both_orders": ["STS-B"]}):
        tiny = {"random_init": True, "encoder_overrides": dict(TINY)}
        config = TrainConfig(tasks=["rte"], data_dir=str(data), **tiny, **setting)
        with pytest.raises(BamError, match=r"\((write rte|write stsb)\)$"):
            train(config, out, quiet=True)
    assert not out.exists()


def test_a_run_that_fails_before_any_stage_leaves_no_folder(tmp_path, capsys) -> None:
    """It left a folder holding only bam_run.json, which made it look like a run."""
    out = tmp_path / "run"
    missing = tmp_path / "no-data"
    _fails(capsys, ["run", "--preset", "smoke", "--output", str(out), "-q", f"train.data_dir={missing}"],
           f"{missing}/RTE/train.tsv: file not found")  # fmt: skip
    assert not out.exists()


def test_a_diverged_training_stops_with_the_step_and_a_remedy(tmp_path, capsys) -> None:
    """It trained on to the end with a NaN loss and reported a score of 0 as a finished run."""
    data, _ = _data(tmp_path, "stsb")
    out = tmp_path / "out"
    _fails(capsys, _train(data, out, "learning_rate=1e30", "epochs=8", task="stsb"),
           "the training loss is nan", "try a lower learning_rate")  # fmt: skip
    assert not (out / "train_done.json").exists()  # what is there is a resumable, unfinished run


def test_inspecting_a_folder_without_glue_files_is_an_error(tmp_path, capsys) -> None:
    """It printed "no GLUE files found" and exited 0, as if a wrong path were an empty dataset."""
    _fails(capsys, ["data", "inspect", str(tmp_path)], f"{tmp_path}: no GLUE files found", "RTE/train.tsv")
