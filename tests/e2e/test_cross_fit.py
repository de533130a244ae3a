"""Cross-fitted teacher outputs (``methods.<name>.teacher_folds``): folds, checks, stage keys, a run.

A fold teacher must never have seen (in either order) a row whose output the student reads from
it; stages of runs without folds must keep the keys they had before folds existed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bam.cli.app import main
from bam.config.run import load_run_config
from bam.config.train import TrainConfig, build_dataclass, config_to_dict
from bam.data.features import load_or_tokenize
from bam.data.prepare import fold_assignment, training_folds, training_rows
from bam.distill.store import load_outputs_for, read_teacher_metadata
from bam.errors import BamError
from bam.experiment.graph import build_graph
from bam.experiment.record import TEACHER_BATCH, combined_hash
from bam.fileio import sha256_file
from bam.inference.forward import predict_outputs
from bam.model import load_bam_model
from bam.precision import inference_precision
from bam.tasks import get_task
from bam.train.keys import run_key, run_keys

OOF = "methods.oof={lambda_schedule: linear, teacher_folds: 2}"


def _rows(examples) -> list[tuple]:
    return [(examples.ids[i], *(column[i] for column in examples.texts)) for i in range(len(examples))]


def _config(**values) -> TrainConfig:
    return build_dataclass(TrainConfig, {"tasks": ["mrpc"], **values}, "test")


@pytest.mark.parametrize(("rows", "folds"), [(10, 3), (48, 2), (1001, 5), (7, 7)])
def test_folds_are_balanced_and_fixed(rows: int, folds: int) -> None:
    assignment = fold_assignment(rows, folds)
    sizes = np.bincount(assignment, minlength=folds)
    assert set(assignment.tolist()) <= set(range(folds)) and sizes.sum() == rows
    assert sizes.max() - sizes.min() <= 1
    assert np.array_equal(assignment, fold_assignment(rows, folds))


def test_more_folds_than_rows_is_refused_by_task() -> None:
    task = get_task("mrpc")
    with pytest.raises(BamError, match=r"^mrpc: 5 folds \(teacher_folds\) but only 4 training rows$"):
        training_rows(task, _config(train_cap={"mrpc": 4}, cv_folds=5, cv_holdout=1))
    assert len(training_rows(task, _config(train_cap={"mrpc": 5}, cv_folds=5, cv_holdout=1))) == 4


def test_fold_teachers_hold_out_their_fold_in_both_orders() -> None:
    task = get_task("mrpc")
    full = _config(train_cap={"mrpc": 60}, both_orders=["mrpc"], seed=1)
    rows = training_rows(task, full)
    folds = training_folds(task, full, 3)
    assert len(rows) == len(folds) == 120
    assert np.array_equal(folds, training_folds(task, dataclasses.replace(full, seed=2), 3))  # any seed
    # The swapped copy of row j is row 60 + j and lies in the same fold.
    first, second = rows.texts
    assert first[60:] == second[:60] and np.array_equal(folds[:60], folds[60:])
    assert np.bincount(folds[:60]).tolist() == [20, 20, 20]
    seen_by: list[set] = []
    for holdout in range(3):
        teacher = dataclasses.replace(full, cv_folds=3, cv_holdout=holdout)
        trained = training_rows(task, teacher)
        expected = [row for row, fold in zip(_rows(rows), folds, strict=True) if fold != holdout]
        assert _rows(trained) == expected  # exactly the other folds, in the full set's order
        held_out = {rows.ids[i] for i in np.flatnonzero(folds == holdout)}
        assert held_out.isdisjoint(trained.ids)  # neither (a, b) nor (b, a) of a held-out pair
        seen_by.append(held_out)
    assert set.union(*seen_by) == set(rows.ids) and sum(map(len, seen_by)) == 60  # disjoint, covering


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cv_folds": 1}, "cv_folds must be 0 (off) or at least 2, got 1"),
        ({"cv_folds": 3, "cv_holdout": 3}, "cv_holdout must be a fold number from 0 to cv_folds - 1"),
        ({"cv_holdout": 1}, "cv_holdout must be a fold number"),
        ({"cv_folds": 2, "cv_holdout": -1}, "cv_holdout must be a fold number"),
    ],
)
def test_train_config_refuses_bad_folds_by_name(values: dict, message: str) -> None:
    with pytest.raises(BamError, match="^test: " + re.escape(message)):
        _config(**values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["methods.oof={lambda_schedule: linear, teacher_folds: 1}"], "must be a whole number, at least 2"),
        (["methods.oof={lambda_schedule: linear, teacher_folds: 2.5}"], "must be a whole number"),
        (["methods.oof={lambda_schedule: linear, teacher_folds: true}"], "must be a whole number"),
        (["methods.oof={lambda_schedule: linear, teacher_folds: 2, teachers: 2}"], "not with an ensemble"),
        ([OOF, "teachers_per_task=3"], "not with an ensemble of 3 teachers"),
        (["methods.oof={lambda_schedule: gold, teacher_folds: 2}"], "lambda_schedule: gold student reads no"),
        ([OOF, "student.train_cap={rte: 40, stsb: 48}"], "must train on the same rte rows"),
    ],
)
def test_run_config_refuses_bad_teacher_folds_by_name(overrides: list[str], message: str) -> None:
    with pytest.raises(BamError, match=r"^methods\.oof\.teacher_folds.*" + message):
        load_run_config("smoke", None, overrides)


def test_fields_bam_run_sets_per_stage_are_not_set_by_hand_in_a_run() -> None:
    """``teacher.tasks`` and ``train.seed`` were silently replaced by each stage's own."""
    for section in ("train", "teacher", "student", "methods.bam"):
        with pytest.raises(BamError, match=rf"^{section}\.cv_folds: bam run sets it .* use teacher_folds"):
            load_run_config("smoke", None, [f"{section}.cv_folds=2"])
        with pytest.raises(BamError, match=rf"^{section}\.seed: bam run sets it .* use the run's seeds"):
            load_run_config("smoke", None, [f"{section}.seed=5"])
        with pytest.raises(BamError, match=rf"^{section}\.tasks: bam run sets it .* use the run's tasks"):
            load_run_config("smoke", None, [f"{section}.tasks=[rte]"])


def test_stage_keys_without_later_settings_are_the_keys_from_before_them() -> None:
    config = load_run_config("smoke", None, [])
    teacher = config.teacher_config("rte", 13)
    # The fields that existed before cross-fitting, the annealing horizon, sampling boosts and
    # weight averaging, and nothing else, describe a stage that uses none of them.
    later = {"cv_folds", "cv_holdout", "lambda_horizon", "sampling_boost", "ema_decay"}
    later |= {"gradient_accumulation_steps", "compile", "attention", "precision"}
    later |= {"sampling", "sampling_update_every", "sampling_slice", "init_model"}  # keyed only when set
    later |= {"sampling_lag_target", "sampling_lag_scale"}
    before = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in later]
    assert sorted(set(config_to_dict(teacher)) - {"precision"}) == sorted(before)
    # Pinned: the smoke preset's rte teacher key as computed by bam before cross-fitting existed
    # (stages cached under the old keys must be found again). It moves only when the data, the
    # packaged encoder or a pre-existing setting changes.
    # Every stage then was fp32; so is this one, whatever precision `auto` picks on this machine.
    teacher = dataclasses.replace(teacher, precision="fp32")
    assert "1f4100d6e6375681" in run_keys(teacher)
    keys = {run_key(config.fold_teacher_config("rte", 13, 2, i)) for i in range(2)}
    keys |= {run_key(config.fold_teacher_config("rte", 13, 3, 0)), run_key(teacher)}
    assert len(keys) == 4  # every fold teacher a stage of its own
    assert run_key(dataclasses.replace(teacher, lambda_horizon=1.0)) == run_key(teacher)
    assert run_key(dataclasses.replace(teacher, lambda_horizon=0.5)) != run_key(teacher)
    assert run_key(dataclasses.replace(teacher, sampling_boost={"rte": 2.0})) != run_key(teacher)
    assert run_key(dataclasses.replace(teacher, ema_decay=0.999)) != run_key(teacher)


def test_fold_teachers_are_planned_for_every_fold_count(tmp_path: Path, capsys) -> None:
    config = load_run_config("smoke", None, [OOF, "methods.oof3={lambda_schedule: linear, teacher_folds: 3}"])
    stages = build_graph(config).seeds[0].stages
    names = [stage.label for stage in stages if stage.role.is_teacher and stage.tasks == ("rte",)]
    assert names == ["teacher-rte-s13"] + [f"teacher-rte-s13-fold{i}of2" for i in range(2)] + [
        f"teacher-rte-s13-fold{i}of3" for i in range(3)
    ]
    assert main(["run", "--preset", "smoke", "--dry-run", "--jobs", "2", OOF]) == 0
    plan = capsys.readouterr().out
    assert "teacher rte s13 fold 1/2     rows       24" in plan  # 48 rows less one fold of 24
    assert "all 6 teacher stages 2 at a time (" in plan and "then all 3 student stages 2 at a time (" in plan


@pytest.mark.parametrize(
    ("overrides", "needed"),
    [
        ([], 1),  # Single and BAM: one teacher each task
        (["methods.single=null"], 1),  # BAM still distils from it
        (["methods.single=null", "methods.bam=null"], 0),  # Multi reads no teacher
        (["methods.single=null", "methods.bam=null", OOF], 0),  # only fold teachers
    ],
)
def test_only_the_teachers_some_method_reads_are_trained(
    overrides: list[str], needed: int, tmp_path: Path
) -> None:
    config = load_run_config("smoke", None, overrides)
    graph = build_graph(config)
    assert graph.teachers_per_task == needed
    folds = 2 if OOF in overrides else 0
    names = [
        stage.label for stage in graph.seeds[0].stages if stage.role.is_teacher and stage.tasks == ("rte",)
    ]
    assert names == ["teacher-rte-s13"] * needed + [f"teacher-rte-s13-fold{i}of2" for i in range(folds)]


@pytest.mark.slow
def test_smoke_run_distils_from_out_of_fold_outputs(tmp_path: Path) -> None:
    out = tmp_path / "oof"
    argv = ["run", "--preset", "smoke", "--output", str(out), "--quiet", "methods.multi=null", OOF]
    argv += ["methods.bam=null", "train.both_orders=[stsb]", "train.num_threads=1"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"single", "oof"} and set(results["methods"]["oof"]) == {
        "rte",
        "stsb",
        "avg",
    }
    stages = results["details"]["stages"]["13"]
    (student_dir,) = (Path(p) for p in stages["oof"])
    student = build_dataclass(TrainConfig, json.loads((student_dir / "train_config.json").read_text()), "x")
    for name in ("rte", "stsb"):
        task = get_task(name)
        rows = training_rows(task, student)
        fold_dirs = sorted(Path(p) for p in stages["single"] if f"teacher-{name}-s13-fold" in p)
        assert [d.name.split("-")[3] for d in fold_dirs] == ["fold0of2", "fold1of2"]
        (path,) = student.teacher_outputs[name]
        hashes = [sha256_file(d / "model" / "model.safetensors") for d in fold_dirs]
        assembled = load_outputs_for(path, rows, combined_hash(hashes))
        covered = np.zeros(len(rows), dtype=bool)
        for folder in fold_dirs:
            # The rows this teacher never trained on, found from its own training rows.
            trained = json.loads((folder / "train_config.json").read_text())
            seen = set(_rows(training_rows(task, build_dataclass(TrainConfig, trained, "x"))))
            held = np.array([row not in seen for row in _rows(rows)])
            assert held.any() and not (held & covered).any()
            covered |= held
            if name in student.both_orders:  # a pair and its swapped copy: held out together
                assert np.array_equal(held[: len(rows) // 2], held[len(rows) // 2 :])
            model, tokenizer, meta = load_bam_model(folder / "model")
            features = load_or_tokenize(rows.subset(np.flatnonzero(held)), tokenizer, student.max_length)
            pad_id = tokenizer.pad_token_id or 0
            precision = inference_precision(meta.get("precision"), torch.device("cpu"))  # as it trained
            mine = predict_outputs(
                model, features, task.head_name, pad_id, TEACHER_BATCH, precision=precision
            )
            np.testing.assert_allclose(assembled[held], mine, rtol=1e-4, atol=1e-5)
        assert covered.all()
        assert read_teacher_metadata(path)["teacher_hash"] == combined_hash(hashes)

    written = {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*/*.safetensors")}
    assert main(argv) == 0  # everything cached: no stage trained, no output recorded again
    again = json.loads((out / "results.json").read_text())
    assert again["details"]["stages_trained"] == [] and again["methods"] == results["methods"]
    assert {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*/*.safetensors")} == written
