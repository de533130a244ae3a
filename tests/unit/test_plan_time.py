"""`bam run --dry-run` estimates wall time from the FLOP count and a rate timed on this machine."""

from __future__ import annotations

import re

import pytest

from bam.cli.app import main
from bam.config.run import load_run_config
from bam.experiment.plan import StepRate, measure_rate
from bam.flops import encoder_flop_model


def test_a_step_costs_its_overhead_and_its_flops_at_the_rate() -> None:
    rate = StepRate(overhead=0.5, flops_per_second=1e9, how="")
    assert rate.seconds(steps=10, flops=2e9) == pytest.approx(7.0)


def test_the_rate_is_timed_on_the_run_s_model() -> None:
    config = load_run_config("smoke", None, []).teacher_config("rte", 13)
    model, _ = encoder_flop_model(config.model, config.encoder_overrides)
    rate = measure_rate(config, model)
    assert rate.flops_per_second > 0 and rate.overhead >= 0
    assert rate.how.startswith("timed here: 3 training steps of minilm-l6 per shape, ")
    assert f"batch {config.batch_size} × 16/64 tokens" in rate.how


def test_the_dry_run_gives_the_time_per_seed_unless_told_not_to(capsys) -> None:
    assert main(["run", "--preset", "smoke", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert re.search(r"^estimated time per seed: ~\d+ (s|min) \(teachers ~", plan, re.MULTILINE)
    assert "  rate timed here: " in plan and "evaluation, teacher outputs" in plan
    assert re.search(r"teacher rte s13 .* PFLOP  ~\d+ (s|min)$", plan, re.MULTILINE)
    assert main(["run", "--preset", "smoke", "--dry-run", "--no-calibrate"]) == 0
    assert "estimated time: not measured (--no-calibrate)" in capsys.readouterr().out


def test_glue7_plans_the_pools_from_the_shipped_files(capsys) -> None:
    assert main(["run", "--preset", "glue7-cpu", "--dry-run", "--no-calibrate"]) == 0
    plan = capsys.readouterr().out
    assert "  mnli-pool rows    9,832 (files)" in plan and "  qnli-pool rows    4,414 (files)" in plan
    assert "teacher mnli-pool s1" in plan and "plan: 7 tasks × 5 seed(s)" in plan
    assert "not GLUE's MNLI or QNLI dev scores" in plan  # the description heads the plan
