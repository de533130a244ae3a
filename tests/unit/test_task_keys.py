"""The one check of per-task settings, as bam train, bam run and train() each call it."""

from __future__ import annotations

import re

import pytest

from bam.config.train import TrainConfig
from bam.errors import BamError
from bam.tasks import check_per_task_keys


def _refused(message: str, config: TrainConfig, *args, **kwargs) -> None:
    with pytest.raises(BamError, match="^" + re.escape(message)):
        check_per_task_keys(config, *args, **kwargs)


def test_boosts_and_teacher_outputs_name_a_task_trained() -> None:
    config = TrainConfig(tasks=["RTE", "mrpc"], sampling_boost={"rte": 2.0}, teacher_outputs={"mrpc": ["a"]})
    check_per_task_keys(config)  # the config's own tasks, by their own names
    _refused("sampling_boost.rte: 'rte' is not one of the tasks here (tasks: mrpc)", config, ["mrpc"])
    _refused(
        "sampling_boost.RTE: 'RTE' is not one of the tasks here (write rte)",
        TrainConfig(sampling_boost={"RTE": 2.0}),
    )


def test_caps_are_checked_for_spelling_only_unless_the_tasks_they_may_name_are_given() -> None:
    config = TrainConfig(tasks=["rte"], train_cap={"mrpc": 5, "mytask": 3}, both_orders=["stsb"])
    check_per_task_keys(config)  # a bam run stage: the whole run's caps, custom tasks too
    _refused("train_cap.mrpc: 'mrpc' is not one of the tasks here (tasks: rte)", config, shared=["rte"])
    _refused(
        "train_cap.SST-2: settings name a task by its own name (write sst2)",
        TrainConfig(train_cap={"SST-2": 1}),
    )
    named = {"where": lambda setting, key: f"train.{setting}"}
    _refused(
        "train.both_orders.stsb: 'stsb' is not one of",
        TrainConfig(both_orders=["stsb"]),
        shared=["rte"],
        **named,
    )
