"""Files someone else made: YAML, archives, model folders, results folders.

Each is met with one ``bam: error:`` line naming the file (and the line or field where there is
one), exit status 2, no traceback, and nothing half-written; nothing in them runs code (YAML tags,
pickled weights) or reaches outside the folder it belongs in (archive members).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from bam.cli.app import main
from bam.cpu import machine
from bam.data.download import download_glue
from bam.errors import BamError
from bam.model import ALLOW_PICKLE_ENV, META_FILE, MODEL_FILE, load_encoder, resolve_encoder_path
from bam.tasks.glue import GLUE_TASKS
from tests import helpers
from tests.helpers import TINY, save_tiny_model

ROOT = helpers.TESTS.parent


def _fails(capsys: pytest.CaptureFixture, argv: list[str], *needles: object) -> str:
    """``bam argv`` ends with status 2 and one error line holding every needle."""
    capsys.readouterr()
    assert main([*argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bam: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, (needle, err)
    return err


# ---------------------------------------------------------------- YAML

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)  # 9**9 strings from a 1 KB file: the "billion laughs"
YAML_CASES = {
    "aliases": (BOMB, "line 2", "aliases (*a) are not allowed"),
    "python-tag": ("seeds: !!python/object/apply:os.system ['touch PWNED']\n", "line 1", "python/object"),
    "unknown-tag": ("seeds: !include /etc/passwd\n", "line 1", "!include"),
    "deep": ("seeds: " + "[" * 5000 + "]" * 5000 + "\n", "line 1", "nested more than"),
    "huge": ("seeds: [" + ", ".join(["1"] * 150_000) + "]\n", "line 1", "more than 100000 values"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_a_run_config_is_read_safely_and_within_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    text, line, problem = YAML_CASES[case]
    path = tmp_path / "run.yaml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    _fails(capsys, ["run", "--config", str(path), "--dry-run"], f"{path} {line}: invalid YAML", problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]  # no PWNED, no runs/


@pytest.mark.parametrize("case", ["aliases", "python-tag", "deep"])
def test_a_train_config_and_a_custom_task_are_read_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    text, line, problem = YAML_CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.yaml").write_text(text)
    _fails(capsys, ["train", "--config", "train.yaml", "--output", "out"], "train.yaml", line, problem)
    (tmp_path / "task.yaml").write_text(text.replace("seeds:", "name:"))
    _fails(capsys, ["train", "--task", str(tmp_path / "task.yaml"), "--output", "out"], "task.yaml", problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task.yaml", "train.yaml"]


# ---------------------------------------------------------------- archives


def test_archive_members_never_leave_the_output_folder(tmp_path: Path) -> None:
    """Only the task table's paths are read from an archive: hostile members are never written."""
    www = tmp_path / "www"
    www.mkdir()
    with zipfile.ZipFile(www / "RTE.zip", "w") as archive:
        for split in ("train", "dev", "test"):
            archive.writestr(f"RTE/{split}.tsv", f"index\tsentence1\tsentence2\tlabel\n0\ta\tb\t{split}\n")
        for hostile in ("../../escaped.tsv", "/tmp/absolute.tsv", "RTE/../../up.tsv", "RTE/../../../x/y.tsv"):
            archive.writestr(hostile, "gotcha")
    raw = (www / "RTE.zip").read_bytes()
    table = {"RTE.zip": (len(raw), hashlib.sha256(raw).hexdigest())}
    written = download_glue(tmp_path / "out", ["rte"], base_url=f"file://{www}", checksums=table)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "RTE/dev.tsv", "RTE/test.tsv", "RTE/train.tsv",
    ]  # fmt: skip
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["out/RTE/dev.tsv", "out/RTE/test.tsv", "out/RTE/train.tsv", "www/RTE.zip"]
    assert not Path("/tmp/absolute.tsv").exists()


def test_a_table_path_that_would_leave_the_folder_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    task = GLUE_TASKS["rte"]
    evil = {name: dataclasses.replace(split, path=f"../{split.path}") for name, split in task.splits.items()}
    monkeypatch.setitem(GLUE_TASKS, "rte", dataclasses.replace(task, splits=evil))
    with zipfile.ZipFile(www / "RTE.zip", "w") as archive:
        for split in evil.values():
            archive.writestr(split.path, "index\tsentence1\tsentence2\tlabel\n")
    raw = (www / "RTE.zip").read_bytes()
    table = {"RTE.zip": (len(raw), hashlib.sha256(raw).hexdigest())}
    with pytest.raises(BamError, match="not a path inside"):
        download_glue(tmp_path / "out", ["rte"], base_url=f"file://{www}", checksums=table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


# ---------------------------------------------------------------- pickled weights


def _pickled_encoder(folder: Path) -> Path:
    """A model folder as older tools wrote it: config, tokenizer and ``pytorch_model.bin`` only."""
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(**TINY)).save_pretrained(folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(resolve_encoder_path("minilm-l6")) / name, folder / name)
    return folder


def test_a_model_folder_with_only_pickled_weights_is_refused_unless_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _pickled_encoder(tmp_path / "old-model")
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    monkeypatch.setattr(machine, "busy_share", lambda seconds: 0.0)  # no busy-machine warning line
    with pytest.raises(BamError, match=f"only in pytorch_model.bin, a pickle.*{ALLOW_PICKLE_ENV}=1"):
        load_encoder(str(folder))
    argv = ["train", "--task", "rte", "--model", str(folder), "--output", str(tmp_path / "out")]
    _fails(
        capsys, [*argv, "train_cap={rte: 8}", "epochs=1", "log_with=[]"], folder, "pickle", ALLOW_PICKLE_ENV
    )
    assert not (tmp_path / "out" / "model").exists()
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")  # the user says the folder is trusted
    encoder, _ = load_encoder(str(folder))
    assert encoder.config.hidden_size == TINY["hidden_size"]


# ---------------------------------------------------------------- model folders


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model", ["rte"])


def _meta_cases(meta: dict[str, Any]) -> dict[str, Any]:
    encoder = meta["encoder_config"]
    return {
        "not-json": '{"format": ',
        "a-list": "[]",
        "no-heads": {k: v for k, v in meta.items() if k != "heads"},
        "heads-a-string": {**meta, "heads": "rte"},
        "head-without-labels": {**meta, "heads": [{"task": "rte", "kind": "classification"}]},
        "unknown-model-type": {**meta, "encoder_config": {**encoder, "model_type": "nope"}},
        "hidden-size-a-string": {**meta, "encoder_config": {**encoder, "hidden_size": "big"}},
        "unknown-pooling": {**meta, "pooling": "max"},
    }


def _command(command: str, model: Path, out: Path) -> list[str]:
    """``bam export``, ``submit`` or ``predict`` of ``model``, writing into ``out``."""
    if command == "export":
        return ["export", "--model", str(model), "--task", "rte", "--out", str(out / "exported")]
    if command == "submit":
        return ["submit", "--model", str(model), "--out", str(out / "glue.zip")]
    rows, predictions = str(out / "rows.tsv"), str(out / "predictions.jsonl")
    return ["predict", "--model", str(model), "--task", "rte", "--input", rows, "--output", predictions]


COMMANDS = ("export", "submit", "predict")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_corrupt_model_description_is_one_line_and_writes_nothing(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture, command: str
) -> None:
    meta = json.loads((tiny_model / META_FILE).read_text())
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows.tsv").write_text("sentence1\tsentence2\nA man sleeps.\tA person rests.\n")
    for case, content in _meta_cases(meta).items():
        model = tmp_path / case
        shutil.copytree(tiny_model, model)
        (model / META_FILE).write_text(content if isinstance(content, str) else json.dumps(content))
        _fails(capsys, _command(command, model, out), model / META_FILE)
        assert sorted(p.name for p in out.iterdir()) == ["rows.tsv"], case
    model = tmp_path / "truncated-weights"
    shutil.copytree(tiny_model, model)
    weights = model / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _fails(capsys, _command(command, model, out), weights)
    assert sorted(p.name for p in out.iterdir()) == ["rows.tsv"]


# ---------------------------------------------------------------- results folders

DEMO = ROOT / "results" / "demo" / "results.json"


def _with(results: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """``results`` with the field at dotted ``where`` set to ``value`` (deleted if ``...``)."""
    changed = copy.deepcopy(results)
    *parents, last = where.split(".")
    node = changed
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return changed


REPORT_CASES: dict[str, tuple[str, Any, str]] = {
    # case: (field, value (... deletes it), what the message names)
    "methods-missing": ("methods", ..., "'methods'"),
    "methods-a-list": ("methods", [], "'methods'"),
    "a-score-a-string": ("methods.bam.mrpc", "high", "'methods'"),
    "a-method-a-number": ("methods.bam", 7, "'methods'"),
    "details-missing": ("details", ..., "details.seeds"),
    "details-a-list": ("details", [1], "details.seeds"),
    "seeds-missing": ("details.seeds", ..., "details.seeds"),
    "seeds-a-string": ("details.seeds", "1,2", "details.seeds"),
    "per-seed-a-list": ("details.per_seed", [], "details.per_seed"),
    "stage-seconds-missing": ("details.stage_seconds", ..., "details.stage_seconds"),
    "config-a-string": ("details.config", "x", "details.config"),
    "stage-machines-a-list": ("details.stage_machines", ["fp32"], "details.stage_machines"),
    "a-stage-machine-a-number": ("details.stage_machines", {"teacher-rte-s1": 3}, "details.stage_machines"),
}
# Found by these tests, once tracebacks of bam report; now refused by name like the rest.
REPORT_CRASHES: dict[str, tuple[str, Any, str]] = {
    "seeds-empty": ("details.seeds", [], "details.seeds"),
    "a-stage-time-a-string": ("details.stage_seconds.x", "slow", "details.stage_seconds"),
    "wall-seconds-a-string": ("details.wall_seconds", "long", "details.wall_seconds"),
    "a-method-without-avg": ("methods.bam", {}, "avg"),
    "merged-from-a-string": ("details.merged_from", "elsewhere", "details.merged_from"),
    "stages-a-string": ("details.stages", "teacher-rte-s1", "details.stages"),
    "a-seed-s-stages-a-list": ("details.stages.1", ["teacher-rte-s1"], "details.stages"),
}


def _report_fails(tmp_path: Path, capsys: pytest.CaptureFixture, content: Any, needle: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    path = run / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    _fails(capsys, ["report", str(run)], path, needle)
    assert sorted(p.name for p in run.iterdir()) == ["results.json"]  # no report, plots or temporaries


@pytest.mark.parametrize("case", ["not-json", "empty", "a-list", "not-utf8"])
def test_a_results_file_that_is_not_a_json_object(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    content = {"not-json": '{"methods": {', "empty": "", "a-list": "[1, 2]"}.get(case)
    if content is None:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "results.json").write_bytes(b"\xff\xfe{}")
        _fails(capsys, ["report", str(tmp_path / "run")], tmp_path / "run" / "results.json")
        return
    _report_fails(tmp_path, capsys, content, "results.json")


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_a_results_file_lacking_keys_or_with_wrong_types(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    where, value, needle = REPORT_CASES[case]
    _report_fails(tmp_path, capsys, _with(json.loads(DEMO.read_text()), where, value), needle)


@pytest.mark.parametrize("case", list(REPORT_CRASHES))
def test_a_results_file_with_fields_the_report_once_crashed_on(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    where, value, needle = REPORT_CRASHES[case]
    _report_fails(tmp_path, capsys, _with(json.loads(DEMO.read_text()), where, value), needle)
