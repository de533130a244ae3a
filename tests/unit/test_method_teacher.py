"""``methods.<name>.teacher``: a method may distil from another method's students; what is refused."""

from __future__ import annotations

import re

import pytest

from bam.cli.app import main
from bam.config.run import load_run_config
from bam.errors import BamError

LINEAR = "lambda_schedule: linear"


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (
            {"mm": f"{{{LINEAR}, teacher: nope}}"},
            "methods.mm.teacher: no method 'nope' (methods: single, multi, bam, mm)",
        ),
        ({"mm": f"{{{LINEAR}, teacher: mm}}"}, "methods.mm.teacher: a method cannot be its own teacher"),
        (
            {"a": f"{{{LINEAR}, teacher: b}}", "b": f"{{{LINEAR}, teacher: a}}"},
            "methods.a.teacher: a cycle (a → b → a)",
        ),
        (
            {
                "a": f"{{{LINEAR}, teacher: b}}",
                "b": f"{{{LINEAR}, teacher: c}}",
                "c": f"{{{LINEAR}, teacher: b}}",
            },
            "methods.a.teacher: a cycle (a → b → c → b)",
        ),
        (
            {"mm": "{lambda_schedule: gold, teacher: multi}"},
            "methods.mm.teacher: a lambda_schedule: gold student",
        ),
        ({"mm": f"{{{LINEAR}, teacher: multi, teachers: 2}}"}, "methods.mm.teacher: not with teachers"),
        (
            {"mm": f"{{{LINEAR}, teacher: multi, teacher_folds: 2}}"},
            "methods.mm.teacher: not with teacher_folds",
        ),
        (
            {"mm": f"{{{LINEAR}, teacher: [multi]}}"},
            "methods.mm.teacher must be a method's name, got ['multi']",
        ),
        ({"mm": f"{{{LINEAR}, teachr: multi}}"}, "methods.mm: unknown key teachr (did you mean teacher?)"),
    ],
)
def test_a_bad_teacher_method_is_one_line_naming_the_key(methods: dict[str, str], message: str) -> None:
    overrides = [f"methods.{name}={settings}" for name, settings in methods.items()]
    with pytest.raises(BamError, match="^" + re.escape(message)) as err:
        load_run_config("smoke", None, overrides)
    assert "\n" not in str(err.value)


def test_the_teacher_method_defaults_to_the_task_teachers_and_is_documented(capsys) -> None:
    config = load_run_config("smoke", None, [f"methods.mm={{{LINEAR}, teacher: multi}}"])
    assert (config.method("bam").teacher, config.method("mm").teacher) == ("single", "multi")
    assert main(["config"]) == 0
    assert re.search(
        r"^  teacher: str = single\n +whose outputs it distils from", capsys.readouterr().out, re.M
    )


def test_the_dry_run_lists_the_taught_student_and_whose_outputs_it_reads(tmp_path, capsys) -> None:
    argv = ["run", "--preset", "smoke", "--dry-run", "--output", str(tmp_path / "run")]
    assert main([*argv, f"methods.multi_multi={{{LINEAR}, teacher: multi}}"]) == 0
    plan = capsys.readouterr().out
    assert re.search(r"^  multi_multi rte\+stsb ← multi +rows", plan, re.MULTILINE)
