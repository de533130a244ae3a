"""Did you mean: a misspelt key is pointed only to keys valid where it stands (bam run's top level,
a train/teacher/student section, a method), or to the place a misplaced key belongs."""

from __future__ import annotations

import pytest

from bam.config.run import load_run_config
from bam.config.train import load_train_config
from bam.errors import BamError


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
