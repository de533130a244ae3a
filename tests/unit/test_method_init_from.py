"""``methods.<name>.init_from``: a method whose models start from another method's trained models
(single-task fine-tuning after multi-task training): its stages, keys, plan and what is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from bam.cli.app import main
from bam.config.run import load_run_config
from bam.config.train import TrainConfig
from bam.errors import BamError
from bam.experiment.graph import Read, Reads, build_graph
from bam.experiment.record import NotRecorded
from bam.experiment.stages import place
from bam.model import META_FILE, MODEL_DIR, MODEL_FILE, load_bam_model
from bam.tasks import get_task
from bam.train.setup import build_run_model
from tests.helpers import TINY, save_tiny_model

FT = "methods.bam_ft={per_task: true, init_from: bam, lambda_schedule: gold}"


def test_a_fine_tuned_method_starts_each_task_from_its_source_s_stage_after_it() -> None:
    config = load_run_config(
        "smoke",
        None,
        [
            "methods.again={per_task: true, init_from: bam_ft, lambda_schedule: gold}",  # before its source
            FT,
            "methods.taught={per_task: true, init_from: bam, teacher: bam, lambda_schedule: linear}",
            "methods.from_teacher={per_task: true, init_from: single, lambda_schedule: gold}",
            "methods.multi_ft={init_from: multi, lambda_schedule: gold}",
        ],
    )
    teachers, students, fine_tuned, again = build_graph(config).seeds[0].waves()
    assert [s.label for s in teachers] == ["teacher-rte-s13", "teacher-stsb-s13"]
    assert [(s.label, s.starts_from) for s in students] == [
        ("multi-all-s13", None),
        ("bam-all-s13", None),
        ("from_teacher-rte-s13", "teacher-rte-s13"),
        ("from_teacher-stsb-s13", "teacher-stsb-s13"),
    ]
    assert [(s.title, s.starts_from, dict(s.reads)) for s in fine_tuned] == [
        ("bam_ft rte ⇐ bam", "bam-all-s13", {}),
        ("bam_ft stsb ⇐ bam", "bam-all-s13", {}),
        ("taught rte ← bam ⇐ bam", "bam-all-s13", {"rte": Reads(Read.AVERAGE, ("bam-all-s13",))}),
        ("taught stsb ← bam ⇐ bam", "bam-all-s13", {"stsb": Reads(Read.AVERAGE, ("bam-all-s13",))}),
        ("multi_ft rte+stsb ⇐ multi", "multi-all-s13", {}),
    ]
    assert [(s.label, s.starts_from) for s in again] == [
        ("again-rte-s13", "bam_ft-rte-s13"),
        ("again-stsb-s13", "bam_ft-stsb-s13"),
    ]
    assert all(s.config.init_model is None for s in fine_tuned)  # set by place(), from the source's folder


def _trained(folder: Path, weights: bytes) -> Path:
    """A stand-in for a trained stage folder: a model description and weights of given bytes."""
    (folder / MODEL_DIR).mkdir(parents=True)
    (folder / MODEL_DIR / META_FILE).write_text("{}")
    (folder / MODEL_DIR / MODEL_FILE).write_bytes(weights)
    return folder


def test_the_fine_tuned_stage_s_key_follows_its_source_s_weights(tmp_path: Path) -> None:
    seed = build_graph(load_run_config("smoke", None, [FT])).seeds[0]
    stage = seed.stage("bam_ft-rte-s13")
    with pytest.raises(NotRecorded, match="bam-all-s13 is not placed yet"):
        place(stage, tmp_path, {}, record=False)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    with pytest.raises(NotRecorded, match="bam-all-s13 is not trained yet"):
        place(stage, tmp_path, {"bam-all-s13": untrained}, record=False)
    first = _trained(tmp_path / "a", b"weights of one training")
    folder, config = place(stage, tmp_path, {"bam-all-s13": first}, record=False)
    assert config.init_model == str(first / MODEL_DIR)
    moved = _trained(tmp_path / "moved", b"weights of one training")
    assert place(stage, tmp_path, {"bam-all-s13": moved}, record=False)[0] == folder  # by content
    retrained = _trained(tmp_path / "b", b"weights of another training")
    assert place(stage, tmp_path, {"bam-all-s13": retrained}, record=False)[0] != folder


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (
            ["methods.ft={per_task: true, init_from: nope}"],
            "methods.ft.init_from: no method 'nope' (methods: ",
        ),
        (
            ["methods.ft={per_task: true, init_from: ft}"],
            "methods.ft.init_from: a method cannot start from itself",
        ),
        (
            ["methods.a={per_task: true, init_from: b}", "methods.b={per_task: true, init_from: a}"],
            "methods.a.init_from: a cycle (a → b → a)",
        ),
        (
            ["methods.a={lambda_schedule: linear, teacher: b}", "methods.b={init_from: a}"],
            "methods.a.teacher: a cycle (a → b → a)",
        ),
        (
            ["methods.ft={init_from: single}"],
            "methods.ft.init_from: single trains one model per task, and ft one on all tasks together "
            "(add per_task: true)",
        ),
        (
            ["methods.ft={per_task: true, init_from: bam, encoder_overrides: {num_hidden_layers: 1}}"],
            "methods.ft.init_from: bam trains encoder_overrides {",
        ),
        (["methods.ft={init_from: [bam]}"], "methods.ft.init_from must be a method's name, got ['bam']"),
        (["train.init_model=/some/model"], "train.init_model: bam run sets it for each stage; use methods."),
        (["methods.ft={init_form: bam}"], "methods.ft: unknown key init_form (did you mean init_from?)"),
    ],
)
def test_a_bad_init_from_is_one_line_naming_the_key(methods: list[str], message: str) -> None:
    with pytest.raises(BamError, match="^" + re.escape(message)) as err:
        load_run_config("smoke", None, methods)
    assert "\n" not in str(err.value)


def test_init_from_is_documented_and_the_dry_run_shows_where_each_stage_starts(
    tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("bam.experiment.jobs.os.cpu_count", lambda: 4)
    monkeypatch.setattr("bam.experiment.jobs.torch.cuda.is_available", lambda: False)
    assert main(["config"]) == 0
    assert re.search(
        r"^  init_from: str = null .*\n +a method whose trained models", capsys.readouterr().out, re.M
    )
    argv = ["run", "--preset", "smoke", "--dry-run", "--no-calibrate", "--output", str(tmp_path / "run"), FT]
    assert main([*argv, "--jobs", "2"]) == 0
    plan = capsys.readouterr().out
    assert re.search(r"^  bam_ft rte ⇐ bam +rows", plan, re.MULTILINE)
    assert re.search(r"^  bam_ft stsb ⇐ bam +rows", plan, re.MULTILINE)
    assert (
        "order (--jobs 2): all 2 teacher stages 2 at a time (2 thread(s) each on CPU), "
        "then all 2 student stages 2 at a time (2 thread(s) each on CPU) [multi, bam], "
        "then all 2 student stages 2 at a time (2 thread(s) each on CPU) [bam_ft]; one GPU is shared"
    ) in plan
    assert main([*argv]) == 0
    assert (
        "teachers first (6 stages per seed; students in 2 rounds, each after those it reads or starts from)"
        in (capsys.readouterr().out)
    )


def _tiny(tasks: list[str], source: Path, **settings) -> TrainConfig:
    values = {"random_init": True, "encoder_overrides": dict(TINY), "pooling": "cls", **settings}
    return TrainConfig(tasks=tasks, init_model=str(source), **values)


def test_a_model_starts_from_the_source_s_encoder_and_its_own_tasks_heads(tmp_path: Path) -> None:
    source = save_tiny_model(tmp_path / "multi", ["rte", "stsb"], seed=5)
    saved, _, _ = load_bam_model(source, device="cpu")
    model, _ = build_run_model(_tiny(["rte"], tmp_path / "multi"), [get_task("rte")])
    assert list(model.heads) == ["rte"]  # the source's other heads are left out
    theirs = saved.state_dict()
    for key, weights in model.state_dict().items():
        assert torch.equal(weights, theirs[key]), key


@pytest.mark.parametrize(
    ("pooling", "tasks", "settings", "message"),
    [
        ("cls", ["mrpc"], {}, r"init_model: .*multi has no head for mrpc \(its heads: rte, stsb\)$"),
        (
            "cls",
            ["rte"],
            {"encoder_overrides": {**TINY, "hidden_size": 32}},
            r"model\.safetensors: weights do not match",
        ),
        ("mean", ["rte"], {}, r"weights do not match .*missing \['encoder\.pooler"),  # mean: no pooler
    ],
)
def test_a_source_that_does_not_fit_is_one_line(tmp_path: Path, pooling, tasks, settings, message) -> None:
    save_tiny_model(tmp_path / "multi", ["rte", "stsb"], pooling=pooling)
    with pytest.raises(BamError, match=message) as err:
        build_run_model(_tiny(tasks, tmp_path / "multi", **settings), [get_task(t) for t in tasks])
    assert "\n" not in str(err.value)
