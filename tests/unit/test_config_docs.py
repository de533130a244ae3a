"""Every config key is documented from one table, listed by ``bam config`` and ``--help``; a preset
printed by ``bam config PRESET`` runs as the preset; "did you mean" names only keys valid there."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from bam.cli.app import main
from bam.config import docs
from bam.config.run import METHOD_KEYS, STAGE_FIELDS, RunConfig, load_run_config
from bam.config.train import TrainConfig, config_to_dict, load_train_config
from bam.errors import BamError

TRAIN_KEYS = [f.name for f in dataclasses.fields(TrainConfig)]
RUN_KEYS = [f.name for f in dataclasses.fields(RunConfig)]
PRESETS = ["demo", "smoke", "glue5-cpu", "glue-paper"]


def test_every_config_key_has_a_one_line_description() -> None:
    """Fails when a field is added to TrainConfig or RunConfig without its line in bam.config.docs."""
    assert docs.missing_docs() == [], "add a line per key to src/bam/config/docs.py"


def test_a_key_without_a_line_is_named(monkeypatch) -> None:
    monkeypatch.delitem(docs.TRAIN_DOCS, "temperature")
    monkeypatch.setitem(docs.RUN_DOCS, "seedz", "gone")
    assert docs.missing_docs() == [
        "TrainConfig.temperature has no line in TRAIN_DOCS",
        "RUN_DOCS['seedz'] describes no key of RunConfig",
    ]


def test_bam_config_lists_every_key_with_type_default_and_meaning(capsys) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for key in [*TRAIN_KEYS, *RUN_KEYS, *METHOD_KEYS]:
        assert re.search(rf"^  {key}: \S", out, re.MULTILINE), key
    assert "  learning_rate: float = 5.0e-05\n" in out
    assert "  log_with: list[str] = []\n" in out
    assert "  seeds: list[int] = [13]\n      run seeds" in out
    assert "(bam run: teacher 5.0e-05, student 0.0001)" in out  # the section defaults bam run adds
    assert "  seed: int = 13\n      " in out and "(bam run sets it: use the run's seeds)" in out


@pytest.mark.parametrize(("command", "keys"), [("run", [*RUN_KEYS, *METHOD_KEYS]), ("train", TRAIN_KEYS)])
def test_help_names_every_key_and_points_to_bam_config(capsys, command, keys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # as one line, whatever the wrapping
    for key in keys:
        assert re.search(rf"\b{key}\b", out), key
    assert "`bam config` gives each key's type, default and meaning" in out
    if command == "run":
        for key in STAGE_FIELDS:  # bam run sets these: not offered for its sections
            assert not re.search(rf"take: [^.]*\b{key}\b", out), key


def _stages(config: RunConfig) -> list[dict]:
    """Every stage's training settings, as its stage key reads them."""
    teachers = [config.teacher_config(task, seed) for task in config.tasks for seed in config.seeds]
    students = [
        config.student_config(name, config.tasks, seed)
        for name in config.methods
        if name != "single"
        for seed in config.seeds
    ]
    return [config_to_dict(stage) for stage in [*teachers, *students]]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_printed_preset_runs_as_the_preset(tmp_path, capsys, preset) -> None:
    """`bam config PRESET > FILE; bam run --config FILE` trains what `--preset PRESET` does."""
    assert main(["config", preset]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / f"{preset}.yaml"
    path.write_text(printed)
    values = yaml.safe_load(printed)
    assert set(values) >= {"tasks", "seeds", "train", "teacher", "student", "methods"}
    assert set(values["train"]) | set(values["teacher"]) | set(values["student"]) == set(TRAIN_KEYS) - set(
        STAGE_FIELDS
    )  # fully resolved: every setting at its value
    assert sum(line.lstrip().startswith(("model:", "epochs:")) for line in printed.splitlines()) >= 2
    assert "  model: minilm-l6" in printed or preset == "glue-paper"
    assert re.search(r"^  max_length: \d+ +# tokens kept per input", printed, re.MULTILINE)  # commented
    assert _stages(load_run_config(None, str(path), [])) == _stages(load_run_config(preset, None, []))
    plans = []
    for source in (["--preset", preset], ["--config", str(path)]):
        assert main(["run", *source, "--dry-run", "--no-calibrate", "--output", str(tmp_path / "run")]) == 0
        plans.append(capsys.readouterr().out)
    assert plans[0] == plans[1] and "stages per seed" in plans[0]


def test_a_printed_preset_takes_overrides(tmp_path, capsys) -> None:
    assert (
        main(["config", "smoke", "seeds=[1,2]", "student.epochs=1", "methods.bam_t2={temperature: 2.0}"]) == 0
    )
    path = tmp_path / "mine.yaml"
    path.write_text(capsys.readouterr().out)
    config = load_run_config(None, str(path), [])
    assert config.seeds == [1, 2] and config.student_config("bam_t2", config.tasks, 1).temperature == 2.0
    assert config.student_config("bam", config.tasks, 1).epochs == 1.0
    assert config.teacher_config("rte", 1).epochs == 2.0


def test_bam_config_refuses_what_it_cannot_print(capsys) -> None:
    assert main(["config", "nope"]) == 2
    available = "demo, glue-paper, glue5-cpu, glue7-cpu, smoke"
    assert f"unknown preset 'nope' (available: {available})" in capsys.readouterr().err
    assert main(["config", "seeds=[1]"]) == 2
    assert "a key=value goes after a preset (bam config demo seeds=[1])" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        # a typo in a section: a key of that section, never one bam run sets per stage
        ("teacher.seeds=[1]", "teacher: unknown key seeds (did you mean seeds, at the top level?)"),
        ("student.task=rte", "student: unknown key task (did you mean tasks, at the top level?)"),
        ("train.sed=1", "train: unknown key sed (did you mean seeds, at the top level?)"),
        ("student.learning_rat=1", "student: unknown key learning_rat (did you mean learning_rate?)"),
        (
            "teacher.teacher_folds=2",
            "teacher: unknown key teacher_folds (did you mean methods.<name>.teacher_folds?)",
        ),
        # a method's own keys are valid in a method, and only there
        ("methods.bam.teachrs=2", "methods.bam: unknown key teachrs (did you mean teachers?)"),
        ("methods.bam.per_tsk=true", "methods.bam: unknown key per_tsk (did you mean per_task?)"),
        ("methods.bam.lr=1", "methods.bam: unknown key lr (did you mean learning_rate?)"),
        # a run key misspelt is a run key; a training key at the top level goes to a section
        ("teacher_per_task=2", "unknown key teacher_per_task (did you mean teachers_per_task?)"),
        ("train_cap={rte: 8}", "unknown key train_cap (did you mean train.train_cap?)"),
        ("teacher_folds=2", "unknown key teacher_folds (did you mean methods.<name>.teacher_folds?)"),
    ],
)
def test_did_you_mean_names_only_keys_valid_where_the_typo_stands(override, hint) -> None:
    with pytest.raises(BamError) as err:
        load_run_config("smoke", None, [override])
    assert str(err.value).endswith(hint), str(err.value)


def test_bam_train_suggests_its_own_keys() -> None:
    """bam train has no run sections: seed is its key, not bam run's seeds."""
    with pytest.raises(BamError, match=r"unknown key seeds \(did you mean seed\?\)$"):
        load_train_config(None, ["seeds=1"], {})
