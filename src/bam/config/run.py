"""The configuration of a whole comparison (``bam run``): shared, teacher and student settings.

Every stage is a :class:`~bam.config.TrainConfig` built from layers: the defaults, then ``train``
(shared by all stages), then ``teacher`` or ``student``, then a method's own overrides. Methods
are data: ``single`` is the teachers themselves; any other entry is a student configuration, so
an ablation is one line (``methods.bam_const: {lambda_schedule: constant}``). Three method keys
are not training settings: ``per_task`` (one student per task: Single→Single born-again),
``teachers`` (how many teachers per task, of seeds seed, seed+1000, ..., the student distils from
the average of; ``teachers_per_task`` otherwise) and ``teacher_folds`` (k: cross-fitted teacher
outputs; k extra teachers per task, teacher i trained without fold i of the training rows, and
the student reads, for each row, the outputs of the teacher that held it out).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bam.config.train import (
    KeyPlace,
    TrainConfig,
    build_dataclass,
    check_named_once,
    deep_merge,
    parse_overrides,
    read_yaml,
)
from bam.errors import BamError
from bam.tasks import GLUE_TASKS, check_task_keys, get_task

TEACHER_DEFAULTS: dict[str, Any] = {"learning_rate": 5e-5, "batch_size": 32, "epochs": 3.0}
STUDENT_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-4, "batch_size": 128, "epochs": 6.0}
DEFAULT_METHODS: dict[str, dict[str, Any]] = {
    "single": {},
    "multi": {"lambda_schedule": "gold"},
    "bam": {"lambda_schedule": "linear"},
}
PER_TASK_KEY = "per_task"  # a method key: one student per task (Single→Single born-again)
TEACHERS_KEY = "teachers"  # a method key: an ensemble of this many teachers per task
FOLDS_KEY = "teacher_folds"  # a method key: out-of-fold outputs of this many fold teachers per task
METHOD_KEYS = (PER_TASK_KEY, TEACHERS_KEY, FOLDS_KEY)
# TrainConfig keys bam run sets for each stage, never by hand: what to write instead.
STAGE_FIELDS = {
    "tasks": "the run's tasks",
    "seed": "the run's seeds",
    "cv_folds": FOLDS_KEY,
    "cv_holdout": FOLDS_KEY,
}


@dataclass
class RunConfig:
    tasks: list[str] = field(default_factory=lambda: ["rte", "mrpc", "stsb"])
    seeds: list[int] = field(default_factory=lambda: [13])
    teachers_per_task: int = 1  # >1: an ensemble of teachers (seeds seed, seed+1000, ...)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys for every stage
    teacher: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys for teachers
    student: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys for students
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_METHODS))
    description: str = ""  # what the run is for: the first lines of its plan and its report

    def teacher_config(self, task: str, seed: int) -> TrainConfig:
        values = deep_merge(deep_merge(TEACHER_DEFAULTS, self.train), self.teacher)
        return build_dataclass(
            TrainConfig, {**values, "tasks": [task], "seed": seed}, "teacher", place=SECTION
        )

    def fold_teacher_config(self, task: str, seed: int, folds: int, holdout: int) -> TrainConfig:
        """The teacher of ``task`` trained without fold ``holdout`` of ``folds`` of its rows."""
        return replace(self.teacher_config(task, seed), cv_folds=folds, cv_holdout=holdout)

    def student_config(self, method: str, tasks: list[str], seed: int) -> TrainConfig:
        overrides = {k: v for k, v in self.methods[method].items() if k not in METHOD_KEYS}
        values = deep_merge(deep_merge(deep_merge(STUDENT_DEFAULTS, self.train), self.student), overrides)
        stage = {**values, "tasks": tasks, "seed": seed}
        return build_dataclass(TrainConfig, stage, f"methods.{method}", place=METHOD)

    def per_task(self, method: str) -> bool:
        return bool(self.methods[method].get(PER_TASK_KEY, False))

    def student_groups(self, method: str) -> list[list[str]]:
        """The task lists ``method`` trains a student on each: all tasks together, or each alone."""
        return [[t] for t in self.tasks] if self.per_task(method) else [list(self.tasks)]

    def teacher_count(self, method: str) -> int:
        """Teachers per task that ``method`` distils from (their outputs averaged)."""
        return int(self.methods[method].get(TEACHERS_KEY, self.teachers_per_task))

    def distils_own_teachers(self, method: str) -> bool:
        """Whether ``method``'s student reads its teachers' own outputs (not gold, not cross-fitted)."""
        if method == "single" or self.teacher_folds(method):
            return False
        return self.student_config(method, self.tasks, self.seeds[0]).lambda_schedule != "gold"

    def teachers_needed(self) -> int:
        """Teachers to train per task and seed: member 0 is Single; the rest serve ensembles. None
        when no method reads them (gold or cross-fitted students only, Single dropped)."""
        counts = [1] if "single" in self.methods else []
        counts += [self.teacher_count(m) for m in self.methods if self.distils_own_teachers(m)]
        return max(counts, default=0)

    def teacher_folds(self, method: str) -> int:
        """Folds of ``method``'s cross-fitted teacher outputs; 0: its teachers' own outputs."""
        return int(self.methods[method].get(FOLDS_KEY, 0))

    def fold_counts(self) -> list[int]:
        """Every fold count some method uses: each needs its own k fold teachers per task and seed."""
        return sorted({self.teacher_folds(m) for m in self.methods if m != "single"} - {0})

    def validate(self) -> None:
        """Build every stage's config once, so a typo fails before hours of training."""
        if not self.tasks:
            raise BamError("tasks: at least one task is needed")
        if not self.seeds:
            raise BamError("seeds: at least one seed is needed")
        if self.teachers_per_task < 1:
            raise BamError("teachers_per_task must be at least 1")
        specs = [get_task(t) for t in self.tasks]
        names = [task.name for task in specs]
        check_named_once("tasks", names)
        if not any(task.in_bam_average for task in specs):  # the run compares methods by it
            raise BamError(f"tasks: none of {', '.join(names)} counts towards the BAM average; use bam train")
        check_named_once("seeds", self.seeds)
        for seed in self.seeds:
            if not 0 <= seed < 2**32:
                raise BamError(f"seeds: {seed} is not a whole number from 0 to 2**32 - 1")
        self._check_sections()
        for method, overrides in self.methods.items():
            if method == "single":
                if overrides:
                    raise BamError("methods.single takes no settings (it is the teachers; use `teacher`)")
                continue
            if not isinstance(overrides, dict):
                raise BamError(f"methods.{method} must be a mapping of settings")
            if PER_TASK_KEY in overrides and not isinstance(overrides[PER_TASK_KEY], bool):
                raise BamError(f"methods.{method}.{PER_TASK_KEY} must be true or false")
            count = overrides.get(TEACHERS_KEY, 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise BamError(f"methods.{method}.{TEACHERS_KEY} must be a whole number, at least 1")
            student = self.student_config(method, self.tasks, self.seeds[0])
            sections = [f"methods.{method}", "student", "train"]
            self._check_task_keys(student, names, self.per_task(method), sections)
            if FOLDS_KEY in overrides:
                self._check_folds(method, overrides[FOLDS_KEY], student)
        teacher = self.teacher_config(self.tasks[0], self.seeds[0])
        self._check_task_keys(teacher, names, True, ["teacher", "train"])

    def _check_task_keys(
        self, config: TrainConfig, names: list[str], per_task: bool, sections: list[str]
    ) -> None:
        """Per-task settings must name a task by its own name, so none is silently ignored.
        Caps and pair orders may name any GLUE task (a preset's caps outlive ``tasks=[rte]``);
        a student's boosts and teacher outputs must name a task it trains. An error names the
        first of ``sections`` (most specific first) that holds the key."""
        shared = [[*names, *(t for t in GLUE_TASKS if t not in names)]]
        trained = [[n] for n in names] if per_task else [names]
        by_setting = {
            "train_cap": shared,
            "both_orders": shared,
            "sampling_boost": trained,
            "teacher_outputs": trained,
        }
        for setting, groups in by_setting.items():
            for key in getattr(config, setting):
                held = (f"{s}.{setting}" for s in sections if key in self._section(s).get(setting, ()))
                where = next(held, setting)
                for group in groups:
                    check_task_keys(where, [key], group)

    def _section(self, name: str) -> dict[str, Any]:
        """The settings a run's section holds: ``train``, ``teacher``, ``student`` or ``methods.<m>``."""
        if name.startswith("methods."):
            return self.methods[name.removeprefix("methods.")]
        return getattr(self, name)

    def _check_sections(self) -> None:
        """Check ``train``, ``teacher`` and ``student`` each on its own, so a bad key is named by
        the section that holds it (not by the first method that reads it) and is refused even
        when no method reads it. TrainConfig checks each value alone, so this is exact."""
        sections = {"train": self.train, "teacher": self.teacher, "student": self.student}
        methods = {f"methods.{name}": v for name, v in self.methods.items() if isinstance(v, dict)}
        for section, values in {**sections, **methods}.items():
            for key, instead in STAGE_FIELDS.items():
                if key in values:
                    raise BamError(f"{section}.{key}: bam run sets it for each stage; use {instead}")
        first_stage = {"tasks": self.tasks[:1], "seed": self.seeds[0]}
        for section, values in sections.items():
            defaults = STUDENT_DEFAULTS if section == "student" else TEACHER_DEFAULTS
            build_dataclass(
                TrainConfig, {**deep_merge(defaults, values), **first_stage}, section, place=SECTION
            )

    def _check_folds(self, method: str, folds: Any, student: TrainConfig) -> None:
        """Cross-fitting needs one teacher per task, a student that reads it, and the same rows."""
        where = f"methods.{method}.{FOLDS_KEY}"
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise BamError(f"{where} must be a whole number, at least 2, got {folds!r}")
        if self.teacher_count(method) > 1:
            raise BamError(f"{where}: not with an ensemble of {self.teacher_count(method)} teachers per task")
        if student.lambda_schedule == "gold":
            raise BamError(f"{where}: a lambda_schedule: gold student reads no teacher outputs")
        teacher = self.teacher_config(self.tasks[0], self.seeds[0])
        for task in self.tasks:
            name = get_task(task).name
            if (student.data_dir, student.train_cap.get(name)) != (
                teacher.data_dir,
                teacher.train_cap.get(name),
            ):
                raise BamError(
                    f"{where}: the student and the teachers must train on the same {name} rows "
                    "(data_dir and train_cap), or a fold teacher may have seen the rows it labels"
                )


# Where each key may be written, for "did you mean" (bam.config.train.KeyPlace): the top level,
# a train/teacher/student section, a method. A key of another place is sent there.
_SETTINGS = tuple(f.name for f in fields(TrainConfig) if f.name not in STAGE_FIELDS)
_TO_TOP = {f.name: f"{f.name}, at the top level" for f in fields(RunConfig)}
_TO_METHOD = {key: f"methods.<name>.{key}" for key in METHOD_KEYS}
TOP_LEVEL = KeyPlace(tuple(_TO_TOP), {**{k: f"train.{k}" for k in _SETTINGS}, **_TO_METHOD})
_STAGE_SET = {"seed": "seeds, at the top level", "cv_folds": f"methods.<name>.{FOLDS_KEY}"}
SECTION = KeyPlace(_SETTINGS, {**_TO_TOP, **_STAGE_SET, **_TO_METHOD})
METHOD = KeyPlace((*_SETTINGS, *METHOD_KEYS), _TO_TOP)


def preset_path(name: str) -> Path:
    folder = Path(str(importlib.resources.files("bam") / "config" / "presets"))
    path = folder / f"{name}.yaml"
    if "/" in name or "\\" in name or not path.is_file():  # a name, never a path out of presets/
        available = sorted(p.stem for p in folder.glob("*.yaml"))
        raise BamError(f"unknown preset {name!r} (available: {', '.join(available)})")
    return path


def load_run_config(preset: str | None, config_file: str | None, overrides: list[str]) -> RunConfig:
    """Preset < config file < ``key=value`` overrides; with neither preset nor file, the demo."""
    values: dict[str, Any] = {}
    if preset is None and not config_file:
        preset = "demo"
    if preset is not None:  # `--preset ''` is refused by name, not taken for the demo
        values = read_yaml(preset_path(preset))
    if config_file:
        values = deep_merge(values, read_yaml(config_file))
    values = deep_merge(values, parse_overrides(overrides))
    methods = values.get("methods")
    if "methods" in values and methods is None:  # teachers only: report them as Single
        values["methods"] = {"single": {}}
    elif isinstance(methods, dict) and None in methods.values():  # `methods.x=null` drops a preset method
        values["methods"] = {name: settings for name, settings in methods.items() if settings is not None}
        if not values["methods"]:
            raise BamError("methods: every method was removed (methods=null trains the teachers only)")
    config: RunConfig = build_dataclass(RunConfig, values, config_file or f"preset {preset}", place=TOP_LEVEL)
    config.validate()
    return config
