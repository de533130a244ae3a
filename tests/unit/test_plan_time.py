"""`bam run --dry-run` estimates wall time from the FLOP count and rates timed on this machine:
training steps, and the inference passes around them (dev evaluation, teacher outputs)."""

from __future__ import annotations

import re

import pytest

from bam.cli.app import main
from bam.config.run import RunConfig, load_run_config
from bam.experiment import plan
from bam.experiment.graph import Role, build_graph
from bam.experiment.record import TEACHER_BATCH
from bam.experiment.timing import Rates, StepRate, Work, evaluations, measure_rate
from bam.flops import FlopModel, encoder_flop_model

# Made-up rates: a training step 1 s + FLOPs at 1 GFLOP/s, an inference batch 0.1 s + 1 GFLOP/s.
RATES = Rates(StepRate(1.0, 1e9, "training"), StepRate(0.1, 1e9, "inference"))


def test_a_step_costs_its_overhead_and_its_flops_at_the_rate() -> None:
    rate = StepRate(overhead=0.5, flops_per_second=1e9, how="")
    assert rate.seconds(steps=10, flops=2e9) == pytest.approx(7.0)


def test_the_rate_is_timed_on_the_run_s_model() -> None:
    config = load_run_config("smoke", None, []).teacher_config("rte", 13)
    model, _ = encoder_flop_model(config.model, config.encoder_overrides)
    rates = measure_rate(config, model)
    for rate in (rates.training, rates.inference):
        assert rate.flops_per_second > 0 and rate.overhead >= 0
    assert rates.how.startswith("timed here: 3 training steps of minilm-l6 per shape, ")
    assert f"batch {config.batch_size} × 16/64 tokens: " in rates.training.how
    assert rates.inference.how.startswith(
        f"3 inference batches per shape, batch {config.eval_batch_size} × 16/64"
    )


def test_a_forward_pass_counts_a_third_of_a_training_step_s_flops() -> None:
    model = FlopModel(per_token=1000, per_sequence=0, hidden=8, layers=1)
    work = Work(steps=2, flops=model.estimate(600), evaluations=3, eval_batch=10, dev=((20, 5.0),))
    assert work.training_seconds(RATES) == pytest.approx(2 * 1.0 + 6 * 1000 * 600 / 1e9)
    # 3 evaluations of 20 rows: 2 batches of 10 each, 2 × 1000 × 100 tokens of FLOPs each
    assert work.evaluation_seconds(RATES, model) == pytest.approx(3 * (2 * 0.1 + 2 * 1000 * 100 / 1e9))
    recorded = Work(2, work.flops, 3, 10, work.dev, recorded=((TEACHER_BATCH + 1, 5.0),))
    extra = 2 * 0.1 + 2 * 1000 * (TEACHER_BATCH + 1) * 5 / 1e9  # two batches of TEACHER_BATCH rows at most
    assert recorded.recording_seconds(RATES, model) == pytest.approx(extra)
    assert recorded.seconds(RATES, model) == pytest.approx(work.seconds(RATES, model) + extra)


@pytest.mark.parametrize(
    ("steps", "per_epoch", "every"),
    [(96, 32, 0), (282, 94, 0), (100, 32, 0), (100, 7, 30), (90, 7, 30), (1, 5, 0), (5, 5, 200)],
)
def test_a_stage_evaluates_as_often_as_the_loop_does(steps: int, per_epoch: int, every: int) -> None:
    interval = every or per_epoch  # bam.train.setup: eval_every or an epoch's steps
    loop = sum(1 for done in range(1, steps + 1) if done % interval == 0 or done == steps)  # _train_steps
    assert evaluations(steps, per_epoch, every) == loop


def _works(config: RunConfig, model: FlopModel) -> dict[str, Work]:
    """Each stage of the first seed's graph as the plan sees it, by label."""
    first = build_graph(config).seeds[0]
    student = next(s for s in first.stages if s.role is Role.STUDENT).config
    plans = {name: plan._task_plan(name, student) for name in config.tasks}
    recorded = plan.recorded_outputs(first.stages, plans)
    works = {}
    for stage in first.stages:
        if stage.role is Role.STUDENT:
            task_plans = [plans[task] for task in stage.config.tasks]
        else:
            task_plans = [plan._task_plan(task, stage.config) for task in stage.config.tasks]
        works[stage.label] = plan.stage_work(stage, task_plans, model, recorded.get(stage.label, ()))
    return works


def test_a_stage_that_evaluates_more_often_takes_longer() -> None:
    model, _ = encoder_flop_model("minilm-l6")
    each_epoch = _works(load_run_config("smoke", None, []), model)
    every_step = _works(load_run_config("smoke", None, ["train.eval_every=1"]), model)
    rte, stsb = each_epoch["teacher-rte-s13"].dev, each_epoch["teacher-stsb-s13"].dev
    assert rte[0][0] == 277 and stsb[0][0] == 1500  # every dev row, whatever the training cap
    assert each_epoch["multi-all-s13"].dev == rte + stsb  # a student evaluates on each task it trains
    for label, work in each_epoch.items():
        often = every_step[label]
        assert work.evaluations == 2 and often.evaluations == often.steps > 2  # 2 epochs; every step
        more = often.seconds(RATES, model) - work.seconds(RATES, model)
        assert work.evaluation_seconds(RATES, model) > 0
        assert more == pytest.approx((often.evaluations - 2) / 2 * work.evaluation_seconds(RATES, model))


def test_teacher_outputs_are_timed_once_per_teacher_only_when_a_student_reads_them() -> None:
    model, _ = encoder_flop_model("minilm-l6")
    with_bam = _works(load_run_config("smoke", None, []), model)
    without = _works(load_run_config("smoke", None, ["methods.bam=null"]), model)
    teachers = [label for label in without if label.startswith("teacher-")]
    assert teachers == ["teacher-rte-s13", "teacher-stsb-s13"]
    assert all(work.recorded == () for work in without.values())  # single and multi read no outputs
    for label in teachers:
        assert len(with_bam[label].recorded) == 1 and with_bam[label].recorded[0][0] == 48  # the cap
        assert with_bam[label].seconds(RATES, model) > without[label].seconds(RATES, model)
    assert all(work.recorded == () for label, work in with_bam.items() if label not in teachers)
    two = _works(load_run_config("smoke", None, ["methods.bam2={lambda_schedule: linear}"]), model)
    once = with_bam["teacher-rte-s13"].recorded
    assert two["teacher-rte-s13"].recorded == once  # read by two students, recorded once


def test_fold_teachers_record_on_the_rows_they_held_out() -> None:
    model, _ = encoder_flop_model("minilm-l6")
    works = _works(
        load_run_config("smoke", None, ["methods.oof={lambda_schedule: linear, teacher_folds: 2}"]), model
    )
    assert [w.recorded[0][0] for label, w in works.items() if "-fold" in label] == [24, 24, 24, 24]


def test_the_dry_run_gives_the_time_per_seed_unless_told_not_to(capsys) -> None:
    assert main(["run", "--preset", "smoke", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^estimated time per seed: ~\d+ (s|min) \(teachers ~", text, re.MULTILINE)
    assert "  rate timed here: " in text and "; 3 inference batches per shape, batch 32 × " in text
    assert re.search(r"counted: training steps, dev evaluation \(~\d+ s per seed\) and teacher outputs", text)
    assert "(training steps only: 6 × non-embedding parameters × tokens; padding" in text
    assert re.search(r"teacher rte s13 .* PFLOP  ~\d+ (s|min)$", text, re.MULTILINE)
    assert main(["run", "--preset", "smoke", "--dry-run", "--no-calibrate"]) == 0
    assert "estimated time: not measured (--no-calibrate)" in capsys.readouterr().out


def _seconds(duration: str) -> int:
    """Seconds of a plan's duration: ``42 s``, ``7 min`` or ``1 h 05 min``."""
    found = re.fullmatch(r"(?:(\d+) h )?(\d+) (s|min)", duration)
    assert found is not None, duration
    hours, value, unit = found.groups()
    return 3600 * int(hours or 0) + int(value) * (60 if unit == "min" else 1)


def test_the_plan_s_times_count_evaluation_and_teacher_outputs(monkeypatch, capsys) -> None:
    # Inference at 0.5 s per batch, the rest next to nothing: the smoke teachers' 2 evaluations of
    # 277 + 1,500 dev rows (9 + 47 batches) take 56 s, their outputs on 48 rows each 2 s more.
    slow = Rates(StepRate(0.0, 1e15, "training"), StepRate(0.5, 1e15, "inference"))
    monkeypatch.setattr(plan, "measure_rate", lambda config, model: slow)
    seconds = {}
    for name, overrides in {
        "both": [],
        "no_bam": ["methods.bam=null"],
        "often": ["train.eval_every=1"],
    }.items():
        assert main(["run", "--preset", "smoke", "--dry-run", *overrides]) == 0
        text = capsys.readouterr().out
        found = re.search(r"^estimated time per seed: ~.+ \(teachers ~(.+?), students", text, re.MULTILINE)
        assert found is not None, text
        seconds[name] = _seconds(found[1])
    assert (seconds["no_bam"], seconds["both"]) == (56, 58) and seconds["often"] > 3 * 56


def test_glue7_plans_the_pools_from_the_shipped_files(capsys) -> None:
    assert main(["run", "--preset", "glue7-cpu", "--dry-run", "--no-calibrate"]) == 0
    plan = capsys.readouterr().out
    assert "  mnli-pool rows    9,832 (files)" in plan and "  qnli-pool rows    4,414 (files)" in plan
    assert "teacher mnli-pool s1" in plan and "plan: 7 tasks × 5 seed(s)" in plan
    assert "not GLUE's MNLI or QNLI dev scores" in plan  # the description heads the plan
