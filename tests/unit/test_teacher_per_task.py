"""``teacher.per_task``: one task's teachers train with their own settings, the rest as before."""

from __future__ import annotations

import re

import pytest
import yaml

from bam.cli.app import main
from bam.config.run import RunConfig, load_run_config
from bam.errors import BamError
from bam.experiment.plan import describe_plan

RTE_LONGER = ["teacher.per_task.RTE.epochs=10", "teacher.per_task.stsb={learning_rate: 5.0e-5}"]


def test_a_task_s_teachers_take_its_own_settings_over_the_teacher_section() -> None:
    config = load_run_config("smoke", None, RTE_LONGER)
    rte, stsb = config.teacher_config("rte", 13), config.teacher_config("stsb", 13)
    assert (rte.epochs, rte.learning_rate) == (10.0, 1e-3)  # epochs its own, the rest the section's
    assert (stsb.epochs, stsb.learning_rate) == (2.0, 5e-5)
    assert config.teacher_config("RTE", 1013).epochs == 10.0  # an ensemble member, by any name
    assert config.fold_teacher_config("rte", 13, 2, 1).epochs == 10.0
    assert config.student_config("bam", config.tasks, 13).epochs == 2.0  # students are not teachers


def test_the_python_api_takes_per_task_teacher_settings() -> None:
    config = RunConfig(tasks=["rte", "mrpc"], teacher={"epochs": 2, "per_task": {"rte": {"epochs": 5}}})
    config.validate()
    assert [config.teacher_config(t, 1).epochs for t in ("rte", "mrpc")] == [5.0, 2.0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "teacher.per_task.rte.lerning_rate=1",
            "teacher.per_task.rte: unknown key lerning_rate (did you mean learning_rate?)",
        ),
        ("teacher.per_task.rte.epochs=0", "teacher.per_task.rte: epochs must be a positive number, got 0.0"),
        ("teacher.per_task.mnli.epochs=1", "teacher.per_task.mnli: not a task of this run (tasks: rte, stsb"),
        ("teacher.per_task.nope.epochs=1", "teacher.per_task.nope: not a task of this run (tasks: rte, stsb"),
        ("teacher.per_task.rte.seed=1", "teacher.per_task.rte.seed: bam run sets it for each stage"),
        ("teacher.per_task.rte.cv_folds=2", "teacher.per_task.rte.cv_folds: bam run sets it for each stage"),
        ("teacher.per_task.rte=3", "teacher.per_task.rte must be a mapping of teacher settings, got 3"),
        ("teacher.per_task=[rte]", "teacher.per_task must be a mapping of task -> teacher settings"),
        ("teacher.per_task={rte: {}, RTE: {}}", "teacher.per_task: rte is named twice (teacher.per_task.rte"),
        ("teacher.per_tsk={rte: {}}", "teacher: unknown key per_tsk (did you mean per_task?)"),
        (
            "teacher.per_task.rte.train_cap={mrpcc: 3}",
            "teacher.per_task.rte.train_cap.mrpcc: 'mrpcc' is not one of the tasks here",
        ),
    ],
)
def test_bad_per_task_teacher_settings_are_one_line_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(BamError, match="^" + re.escape(message)) as err:
        load_run_config("smoke", None, [override])
    assert "\n" not in str(err.value)


def test_the_dry_run_plans_the_longer_teacher_only() -> None:
    def steps(plan: str) -> dict[str, str]:
        return dict(re.findall(r"^  (\S+ \S+(?: s13)?) +rows +\S+ +steps +(\S+)", plan, re.MULTILINE))

    before = steps(describe_plan(load_run_config("smoke", None, [])))
    after = steps(describe_plan(load_run_config("smoke", None, ["teacher.per_task.rte.epochs=10"])))
    assert set(before) == set(after) >= {"teacher rte s13", "teacher stsb s13", "bam rte+stsb"}
    assert {title for title in before if before[title] != after[title]} == {"teacher rte s13"}
    assert int(after["teacher rte s13"]) == 5 * int(before["teacher rte s13"])


def test_bam_config_prints_and_documents_per_task_teacher_settings(tmp_path, capsys) -> None:
    """A printed preset with per-task teacher settings reads back to the same teachers."""
    assert main(["config", "smoke", *RTE_LONGER]) == 0
    path = tmp_path / "mine.yaml"
    path.write_text(capsys.readouterr().out)
    assert yaml.safe_load(path.read_text())["teacher"]["per_task"]["RTE"] == {"epochs": 10}
    printed = load_run_config(None, str(path), [])
    given = load_run_config("smoke", None, RTE_LONGER)
    for task in ("rte", "stsb"):
        assert printed.teacher_config(task, 13) == given.teacher_config(task, 13)
    assert main(["config"]) == 0
    documented = r"^  per_task: dict\[str, dict\] = \{\}\n +task -> settings"
    assert re.search(documented, capsys.readouterr().out, re.MULTILINE)
