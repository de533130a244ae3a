"""`bam run`: the smoke preset end to end, stage reuse, and the offline dry run of the paper recipe."""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from pathlib import Path

import pytest

from bam.cli.app import _setup_logging, main
from bam.experiment import run as pipeline

pytestmark = pytest.mark.slow


def test_smoke_run_writes_all_methods_and_reuses_stages(tmp_path, capsys) -> None:
    out = tmp_path / "smoke"
    assert main(["run", "--preset", "smoke", "--output", str(out)]) == 0  # as a user runs it: not quiet
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "bam_avg"
    assert set(results["methods"]) == {"single", "multi", "bam"}
    for scores in results["methods"].values():
        assert set(scores) == {"rte", "stsb", "avg"}
        assert scores["avg"] == pytest.approx((scores["rte"] + scores["stsb"]) / 2)
    report = (out / "report.md").read_text()
    assert "BAM (teacher annealing)" in report and '"lambda_schedule": "linear"' in report
    printed = capsys.readouterr().out
    assert "Single (teachers)" in printed
    assert "step 3/6 dev rte=" in printed  # each stage's progress, which once crashed the first checkpoint

    stages = sorted(p.name for p in (out / "stages").iterdir())
    assert len(stages) == 4  # two teachers, multi, bam
    # Teacher outputs were recorded for the BAM student and checked against its rows.
    assert list((out / "stages").glob("teacher-rte-*/outputs-*.safetensors"))

    # Same config again: every stage is reused, results are identical.
    assert main(["run", "--preset", "smoke", "--output", str(out), "--quiet"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["methods"] == results["methods"]
    assert again["details"]["stages_trained"] == []
    assert again["details"]["stage_seconds"] == results["details"]["stage_seconds"]  # as recorded

    # A student-only change re-runs the students, not the teachers.
    assert main(["run", "--preset", "smoke", "--output", str(out), "--quiet", "student.epochs=1"]) == 0
    changed = json.loads((out / "results.json").read_text())
    rerun = set(changed["details"]["stages_trained"])
    assert rerun and all(not name.startswith("teacher-") for name in rerun)
    assert changed["methods"]["single"] == results["methods"]["single"]

    # A new folder whose only entry links to these stages: a second run reuses all of them.
    shared = tmp_path / "ablation"
    shared.mkdir()
    (shared / "stages").symlink_to(out / "stages", target_is_directory=True)
    # A description labels the run (plan and report) without retraining anything.
    label = ["description=the smoke run, relabelled"]
    assert main(["run", "--preset", "smoke", "--output", str(shared), "--quiet", *label]) == 0
    reused = json.loads((shared / "results.json").read_text())
    assert reused["details"]["stages_trained"] == [] and reused["methods"] == results["methods"]
    assert (shared / "report.md").read_text().startswith("# bam run report\n\nthe smoke run, relabelled\n")


def test_a_method_can_distil_from_a_teacher_ensemble(tmp_path) -> None:
    out = tmp_path / "ensemble"
    ens = "ens: {lambda_schedule: linear, teachers: 2}"
    methods = f"methods={{single: {{}}, bam: {{lambda_schedule: linear}}, {ens}}}"
    assert main(["run", "--preset", "smoke", "--output", str(out), "--quiet", "tasks=[rte]", methods]) == 0
    results = json.loads((out / "results.json").read_text())
    stages = results["details"]["stages"]["13"]
    assert len(stages["single"]) == 2  # member 0 is Single; member 1 only serves the ensemble
    assert "teacher-rte-s13-" in stages["single"][0] and "teacher-rte-s1013-" in stages["single"][1]
    configs = {m: json.loads((Path(stages[m][0]) / "train_config.json").read_text()) for m in ("bam", "ens")}
    assert len(configs["bam"]["teacher_outputs"]["rte"]) == 1
    assert len(configs["ens"]["teacher_outputs"]["rte"]) == 2
    assert results["methods"]["single"]["rte"] == results["details"]["per_seed"]["13"]["single"]["rte"]


def test_jobs_train_the_same_stages_in_parallel_processes(tmp_path, capsys, caplog, monkeypatch) -> None:
    one_thread = ["train.num_threads=1", "tasks=[rte]"]
    assert main(["run", "--preset", "smoke", "--output", str(tmp_path / "one"), "--quiet", *one_thread]) == 0
    monkeypatch.setattr(pipeline, "PROGRESS_SECONDS", 0.01)
    with caplog.at_level(logging.INFO, logger="bam"):
        argv = ["run", "--preset", "smoke", "--output", str(tmp_path / "two"), "--jobs", "2", *one_thread]
        assert main(argv) == 0
    assert "progress: " in caplog.text  # the workers show no bars: the parent reports for them
    one, two = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert two["methods"] == one["methods"]  # same stages, same keys, same numbers
    names = sorted(p.name for p in (tmp_path / "two" / "stages").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one" / "stages").iterdir())
    assert sorted(two["details"]["stages_trained"]) == names  # trained by the workers, then collected
    assert main(["run", "--preset", "smoke", "--output", str(tmp_path / "x"), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def _library_noise() -> tuple[bool, int]:
    """In a worker process: are transformers' progress bars on, and at what level does it log?"""
    import transformers

    return transformers.utils.logging.is_progress_bar_enabled(), transformers.logging.get_verbosity()


def test_the_job_processes_are_as_quiet_as_the_command(monkeypatch) -> None:
    """`--jobs` stages run in freshly spawned processes, which must not print a weight-loading bar."""
    quieting = ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")
    for name in quieting:
        monkeypatch.setenv(name, "")  # so that the test's changes are undone afterwards
        monkeypatch.delenv(name)
    _setup_logging(argparse.Namespace(quiet=False, verbose=False))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_library_noise) == (False, logging.ERROR)


def test_jobs_are_refused_under_accelerate_launch(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "--preset", "smoke", "--output", str(tmp_path / "x"), "--jobs", "2"]) == 2
    assert "not under accelerate launch" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_paper_recipe_dry_run_works_offline(capsys) -> None:
    assert main(["run", "--preset", "glue-paper", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "bert-large-uncased" in plan and "published size" in plan
    for task in ("mnli", "qqp", "qnli", "wnli"):
        assert f"  {task} " in plan
    assert "rows  392,702 (expected)" in plan  # MNLI is not here: the official count is used
    assert "teacher mnli s1" in plan and "bam cola+sst2" in plan
    assert "wnli: not read, planned from the official row counts (a dry run does not download)" in plan


def test_a_dry_run_says_which_files_it_could_not_read(tmp_path, capsys) -> None:
    """A wrong data_dir was planned from the official counts without a word, and failed later."""
    missing = tmp_path / "glue"
    assert main(["run", "--preset", "smoke", "--dry-run", f"train.data_dir={missing}"]) == 0
    plan = capsys.readouterr().out
    unread = f"rte: not read, planned from the official row counts ({missing}/RTE/train.tsv: file not found"
    assert unread in plan


def test_dry_run_tells_how_jobs_schedule_the_stages(capsys) -> None:
    dry = ["run", "--preset", "glue5-cpu", "--dry-run", "--no-calibrate"]
    assert main([*dry, "description=CoLA, boosted"]) == 0
    plan = capsys.readouterr().out
    assert plan.startswith("CoLA, boosted\n\nplan: 5 tasks")
    assert "order: one stage at a time, seed by seed, teachers first (8 stages per seed)" in plan
    assert main([*dry, "--jobs", "3", "seeds=[1,2]"]) == 0
    out = capsys.readouterr().out
    assert "all 10 teacher stages 3 at a time (" in out and "then all 6 student stages 3 at a time (" in out
    assert main([*dry, "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_a_dry_run_on_a_begun_run_says_which_stages_are_trained(tmp_path, capsys) -> None:
    out = tmp_path / "smoke"
    (out / "stages").mkdir(parents=True)
    argv = ["run", "--preset", "smoke", "--output", str(out), "--quiet", "tasks=[rte]"]
    assert main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"progress in {out}: 0 of 3 stages trained" in lines
    status = {line.split()[0]: line for line in lines if line.startswith("    ")}
    assert status["bam"].split()[1:] == ["rte", "s13", "to", "train,", "after", "its", "teachers'", "outputs"]
    teacher = next(name for name in status if name.startswith("teacher-rte-s13-"))
    assert status[teacher].endswith(" to train") and any(n.startswith("multi-all-s13-") for n in status)

    assert main(argv) == 0
    assert main([*argv, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "3 of 3 stages trained" in printed and f"    {teacher} " in printed
    trained = json.loads((out / "results.json").read_text())["details"]["stages"]["13"]
    assert all(Path(folder).name in printed for folders in trained.values() for folder in folders)

    outputs = list((out / "stages").glob("teacher-rte-*/outputs-*.safetensors"))
    for path in outputs:
        path.unlink()  # BAM's key reads its teacher's outputs, which a dry run must not record
    files = sorted(out.rglob("*"))
    assert main([*argv, "--dry-run"]) == 0
    assert "2 of 3 stages trained" in capsys.readouterr().out
    assert outputs and sorted(out.rglob("*")) == files  # nothing written


def test_a_stage_with_a_checkpoint_is_shown_at_its_step(tmp_path) -> None:
    from bam.experiment.plan import stage_status

    (tmp_path / "checkpoint").mkdir()
    state = {"progress": {"step": 1200, "total_steps": 4677, "elapsed": 60.0}}
    (tmp_path / "checkpoint" / "state.json").write_text(json.dumps(state))
    assert stage_status(tmp_path) == (False, "checkpoint at step 1,200 of 4,677")
    assert stage_status(tmp_path / "missing") == (False, "to train")


def test_overrides_may_sit_on_both_sides_of_an_option(capsys) -> None:
    argv = ["run", "--preset", "glue5-cpu", "methods.bam_t2=null", "--dry-run", "--no-calibrate"]
    argv += ["seeds=[1,2]", "seeds=[4]"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "methods compared: single, multi, bam\n" in out
    assert "λ linear   checkpoints" in out  # BAM anneals over every step
    assert "teacher cola s4" in out and "teacher cola s1" not in out  # the later override wins
    assert main([*argv, "methods.bam.lambda_horizon=0.75"]) == 0
    assert "λ linear to 75% checkpoints" in capsys.readouterr().out
    assert main([*argv, "methods.bam_cola2={lambda_schedule: linear, sampling_boost: {cola: 2.0}}"]) == 0
    plan = capsys.readouterr().out  # BAM's shares per task, then the boosted method's own line
    assert "cola   rows    8,551" in plan and "sampling share  18.4% (α=0.75)" in plan
    assert "  bam_cola2: cola 31.1%, sst2 29.4%, mrpc 13.9%, stsb 19.4%, rte 6.2% (α=0.75, cola ×2)" in plan
    with pytest.raises(SystemExit) as exited:
        main(["run", "--preset", "glue5-cpu", "--dry-run", "--no-calibrate", "--bogus"])
    assert exited.value.code == 2  # one line, as every bad input to bam is: no usage block above it
    assert capsys.readouterr().err == "bam: error: unrecognized arguments: --bogus (see bam --help)\n"


def test_a_lone_stage_of_a_jobs_phase_gets_the_idle_cores(monkeypatch, capsys) -> None:
    monkeypatch.setattr("bam.experiment.jobs.os.cpu_count", lambda: 4)
    monkeypatch.setattr("bam.experiment.jobs.torch.cuda.is_available", lambda: False)
    argv = ["run", "--preset", "glue5-cpu", "--dry-run", "--no-calibrate", "--jobs", "2", "seeds=[1]"]
    assert main([*argv, "methods.multi=null", "methods.bam_t2=null"]) == 0
    assert (
        "all 5 teacher stages 2 at a time (2 thread(s) each on CPU), "
        "then all 1 student stages 1 at a time (4 thread(s) each on CPU)" in capsys.readouterr().out
    )
