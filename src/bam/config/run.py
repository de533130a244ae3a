"""The configuration of a whole comparison (``bam run``): shared, teacher and student settings.

Every stage is a :class:`~bam.config.TrainConfig` built from layers: the defaults, then ``train``
(shared by all stages), then ``teacher`` or ``student``, then a method's own overrides. Methods
are data, read into :class:`Method` objects: ``single`` is the teachers themselves; any other
entry is a student configuration, so an ablation is one line (``methods.bam_const:
{lambda_schedule: constant}``). Five method keys are not training settings: ``per_task`` (one
student per task: Single→Single born-again), ``teacher`` (the method whose outputs it distils
from: ``single``, the task teachers, or another method's students: Multi→Multi, a second round),
``init_from`` (the method whose trained models its students start from, encoder and that task's
head: single-task fine-tuning after multi-task training),
``teachers`` (how many teachers per task, of seeds
seed, seed+1000, ..., the student distils from the average of; ``teachers_per_task`` otherwise)
and ``teacher_folds`` (k: cross-fitted teacher outputs; k extra teachers per task, teacher i
trained without fold i of the training rows, and the student reads, for each row, the outputs of
the teacher that held it out). One key of ``teacher`` is not a training setting either:
``per_task`` (task -> settings that task's teachers take over the rest of ``teacher``: RTE's ten
epochs). Which stages a run trains is for :mod:`bam.experiment.graph` to
say, built once from this configuration.
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
from bam.tasks import GLUE_TASKS, check_per_task_keys, get_task

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
TEACHER_KEY = "teacher"  # a method key: the method whose outputs it reads (default: single)
INIT_KEY = "init_from"  # a method key: the method whose trained models its students start from
METHOD_KEYS = (PER_TASK_KEY, TEACHER_KEY, INIT_KEY, TEACHERS_KEY, FOLDS_KEY)
# A teacher key: task -> the settings that task's teachers (members, fold teachers) take over `teacher`.
TEACHER_KEYS = (PER_TASK_KEY,)
# TrainConfig keys bam run sets for each stage, never by hand: what to write instead.
STAGE_FIELDS = {
    "tasks": "the run's tasks",
    "seed": "the run's seeds",
    "cv_folds": FOLDS_KEY,
    "cv_holdout": FOLDS_KEY,
    "init_model": f"methods.<name>.{INIT_KEY}",
}
SINGLE = "single"  # the method that is the teachers themselves


@dataclass(frozen=True)
class Method:
    """One method of the comparison, as its ``methods`` entry reads: the training settings its
    student takes over ``student``, and the five keys that shape its stages instead."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict, hash=False)  # TrainConfig keys
    per_task: bool = False  # one student per task (Single→Single born-again)
    teachers: int = 1  # teachers per task whose outputs it averages (seeds seed, seed+1000, ...)
    teacher_folds: int = 0  # k: reads cross-fitted outputs of k fold teachers per task; 0: not
    teacher: str = "single"  # the method whose outputs it reads: the task teachers, or a student's
    init_from: str | None = None  # the method whose models its stages start from; None: the encoder

    @property
    def is_single(self) -> bool:
        return self.name == SINGLE

    @property
    def reads_a_method(self) -> bool:
        """It distils from another method's students (Multi→Multi, a round), not the teachers."""
        return self.teacher != SINGLE

    @property
    def one_per_task(self) -> bool:
        """It trains one model per task (Single's teachers, a ``per_task`` student)."""
        return self.per_task or self.is_single

    @property
    def sources(self) -> tuple[str, ...]:
        """The methods whose stages must be trained first: the one it reads, the one it starts from."""
        return (
            *([self.teacher] if self.reads_a_method else []),
            *([self.init_from] if self.init_from else []),
        )

    def student_groups(self, tasks: list[str]) -> list[list[str]]:
        """The task lists it trains a student on each: all tasks together, or each alone."""
        return [[task] for task in tasks] if self.per_task else [list(tasks)]


def parse_method(name: str, settings: Any, teachers_per_task: int = 1) -> Method:
    """A ``methods`` entry as a :class:`Method`; a key of the wrong kind is named."""
    if name == SINGLE:
        if settings:
            raise BamError("methods.single takes no settings (it is the teachers; use `teacher`)")
        return Method(name)
    if not isinstance(settings, dict):
        raise BamError(f"methods.{name} must be a mapping of settings")
    per_task = settings.get(PER_TASK_KEY, False)
    if not isinstance(per_task, bool):
        raise BamError(f"methods.{name}.{PER_TASK_KEY} must be true or false")
    count = settings.get(TEACHERS_KEY, teachers_per_task)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BamError(f"methods.{name}.{TEACHERS_KEY} must be a whole number, at least 1")
    folds = settings.get(FOLDS_KEY, 0)
    if FOLDS_KEY in settings and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        raise BamError(f"methods.{name}.{FOLDS_KEY} must be a whole number, at least 2, got {folds!r}")
    teacher = settings.get(TEACHER_KEY, SINGLE)
    if not isinstance(teacher, str):
        raise BamError(f"methods.{name}.{TEACHER_KEY} must be a method's name, got {teacher!r}")
    start = settings.get(INIT_KEY)
    if start is not None and not isinstance(start, str):
        raise BamError(f"methods.{name}.{INIT_KEY} must be a method's name, got {start!r}")
    overrides = {key: value for key, value in settings.items() if key not in METHOD_KEYS}
    return Method(name, overrides, per_task, count, folds, teacher, start)


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
        values = deep_merge(deep_merge(TEACHER_DEFAULTS, self.train), self.teacher_settings(task))
        return build_dataclass(
            TrainConfig, {**values, "tasks": [task], "seed": seed}, "teacher", place=SECTION
        )

    def teacher_settings(self, task: str | None = None) -> dict[str, Any]:
        """The training settings of ``teacher``; with ``task``, its ``teacher.per_task`` entry over them."""
        shared = {key: value for key, value in self.teacher.items() if key not in TEACHER_KEYS}
        own = self.teacher_per_task().get(get_task(task).name, ({}, ""))[0] if task else {}
        return deep_merge(shared, own)

    def teacher_per_task(self) -> dict[str, tuple[dict[str, Any], str]]:
        """``teacher.per_task`` by each task's own name: (its settings, the key as written). A key is
        a task of the run as the run spells it, by its own name or a GLUE alias (RTE, rte)."""
        given = self.teacher.get(PER_TASK_KEY) or {}
        where = f"teacher.{PER_TASK_KEY}"
        if not isinstance(given, dict):
            raise BamError(f"{where} must be a mapping of task -> teacher settings, got {given!r}")
        names = {spelled: get_task(spelled).name for spelled in self.tasks}
        names.update({name: name for name in list(names.values())})
        resolved: dict[str, tuple[dict[str, Any], str]] = {}
        for key, settings in given.items():
            name = names.get(str(key)) or _task_name(str(key))
            if name is None or name not in names.values():
                raise BamError(f"{where}.{key}: not a task of this run (tasks: {', '.join(self.tasks)})")
            if name in resolved:
                raise BamError(f"{where}: {name} is named twice ({resolved[name][1]}, {key})")
            if not isinstance(settings, dict):
                raise BamError(f"{where}.{key} must be a mapping of teacher settings, got {settings!r}")
            resolved[name] = (settings, f"{where}.{key}")
        return resolved

    def fold_teacher_config(self, task: str, seed: int, folds: int, holdout: int) -> TrainConfig:
        """The teacher of ``task`` trained without fold ``holdout`` of ``folds`` of its rows."""
        return replace(self.teacher_config(task, seed), cv_folds=folds, cv_holdout=holdout)

    def student_config(self, method: str | Method, tasks: list[str], seed: int) -> TrainConfig:
        """The student of ``method`` (a :class:`Method` or its name) on ``tasks`` with ``seed``,
        before the teacher outputs it reads are recorded."""
        if isinstance(method, str):
            method = self.method(method)
        values = deep_merge(deep_merge(STUDENT_DEFAULTS, self.train), self.student)
        stage = {**deep_merge(values, method.overrides), "tasks": tasks, "seed": seed}
        return build_dataclass(TrainConfig, stage, f"methods.{method.name}", place=METHOD)

    def method(self, name: str) -> Method:
        return parse_method(name, self.methods[name], self.teachers_per_task)

    def method_specs(self) -> list[Method]:
        """Every method, in the order of ``methods`` (the comparison's columns)."""
        return [self.method(name) for name in self.methods]

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
        for name in self.methods:  # each method's errors before the next method's
            method = self.method(name)
            if method.is_single:
                continue
            student = self.student_config(method, self.tasks, self.seeds[0])
            sections = [f"methods.{method.name}", "student", "train"]
            self._check_task_keys(student, method.student_groups(names), sections)
            if method.teacher_folds:
                self._check_folds(method, student)
            if method.reads_a_method:
                self._check_teacher_method(method, student)
            if method.init_from is not None:
                self._check_init_from(method, student)
        per_task = self.teacher_per_task()
        for task, name in zip(self.tasks, names, strict=True):
            teacher = self.teacher_config(task, self.seeds[0])
            own = [per_task[name][1]] if name in per_task else []
            self._check_task_keys(teacher, [[name]], [*own, "teacher", "train"])

    def _check_task_keys(self, config: TrainConfig, groups: list[list[str]], sections: list[str]) -> None:
        """Per-task settings (:func:`bam.tasks.check_per_task_keys`) of a stage config trained on
        each of ``groups``: caps and pair orders may name any task of the run or of GLUE (a
        preset's caps outlive ``tasks=[rte]``). An error names the first of ``sections`` (most
        specific first) that holds the key."""
        names = [get_task(task).name for task in self.tasks]
        shared = [*names, *(t for t in GLUE_TASKS if t not in names)]

        def where(setting: str, key: str) -> str:
            held = (f"{s}.{setting}" for s in sections if key in self._section(s).get(setting, ()))
            return next(held, setting)

        for group in groups:
            check_per_task_keys(config, group, shared=shared, where=where)

    def _section(self, name: str) -> dict[str, Any]:
        """The settings a run's section holds: ``train``, ``teacher``, ``student``, ``methods.<m>``
        or ``teacher.per_task.<task>``."""
        if name.startswith("methods."):
            return self.methods[name.removeprefix("methods.")]
        if name.startswith(f"teacher.{PER_TASK_KEY}."):
            return self.teacher[PER_TASK_KEY][name.removeprefix(f"teacher.{PER_TASK_KEY}.")]
        return getattr(self, name)

    def _check_sections(self) -> None:
        """Check ``train``, ``teacher`` and ``student`` each on its own, so a bad key is named by
        the section that holds it (not by the first method that reads it) and is refused even
        when no method reads it. TrainConfig checks each value alone, so this is exact."""
        sections = {"train": self.train, "teacher": self.teacher_settings(), "student": self.student}
        sections.update({where: settings for settings, where in self.teacher_per_task().values()})
        methods = {f"methods.{name}": v for name, v in self.methods.items() if isinstance(v, dict)}
        for section, values in {**sections, **methods}.items():
            for key, instead in STAGE_FIELDS.items():
                if key in values:
                    raise BamError(f"{section}.{key}: bam run sets it for each stage; use {instead}")
        first_stage = {"tasks": self.tasks[:1], "seed": self.seeds[0]}
        for section, values in sections.items():
            defaults = STUDENT_DEFAULTS if section == "student" else TEACHER_DEFAULTS
            stage = {**deep_merge(defaults, values), **first_stage}
            build_dataclass(TrainConfig, stage, section, place=TEACHER if section == "teacher" else SECTION)

    def _check_teacher_method(self, method: Method, student: TrainConfig) -> None:
        """A method taught by another method's students: one that exists, trains students, reads
        them one per task, and is not taught (in the end) by this method itself."""
        where = f"methods.{method.name}.{TEACHER_KEY}"
        if method.teacher not in self.methods:
            raise BamError(f"{where}: no method {method.teacher!r} (methods: {', '.join(self.methods)})")
        if method.teacher == method.name:
            raise BamError(f"{where}: a method cannot be its own teacher")
        if student.lambda_schedule == "gold":
            raise BamError(f"{where}: a lambda_schedule: gold student reads no teacher outputs")
        settings = self.methods[method.name]
        for key in (FOLDS_KEY, TEACHERS_KEY):
            if key in settings:
                raise BamError(f"{where}: not with {key} (it reads one student of {method.teacher} per task)")
        self._check_no_cycle([method.name], where)

    def _check_init_from(self, method: Method, student: TrainConfig) -> None:
        """A method whose models start from another method's: one that exists, trains the same
        encoder, and trains one model for each group of tasks this method trains together."""
        where = f"methods.{method.name}.{INIT_KEY}"
        if method.init_from not in self.methods:
            raise BamError(f"{where}: no method {method.init_from!r} (methods: {', '.join(self.methods)})")
        if method.init_from == method.name:
            raise BamError(f"{where}: a method cannot start from itself")
        source = self.method(method.init_from)
        if source.one_per_task and not method.per_task:
            raise BamError(
                f"{where}: {source.name} trains one model per task, and {method.name} one on all tasks "
                "together (add per_task: true)"
            )
        sources = [self.teacher_config(t, self.seeds[0]) for t in self.tasks] if source.is_single else []
        sources = sources or [self.student_config(source, self.tasks, self.seeds[0])]
        for key in ("model", "encoder_overrides", "pooling"):
            theirs = next(
                (getattr(c, key) for c in sources if getattr(c, key) != getattr(student, key)), None
            )
            if theirs is not None:
                raise BamError(
                    f"{where}: {source.name} trains {key} {theirs!r}, {method.name} {getattr(student, key)!r}"
                )
        self._check_no_cycle([method.name], where)

    def _check_no_cycle(self, chain: list[str], where: str) -> None:
        """No method that ``chain``'s last reads or starts from (and so on) is on ``chain``."""
        for source in self.method(chain[-1]).sources:
            if source in chain:
                raise BamError(f"{where}: a cycle ({' → '.join([*chain, source])})")
            if source in self.methods:  # else: named at its own turn
                self._check_no_cycle([*chain, source], where)

    def _check_folds(self, method: Method, student: TrainConfig) -> None:
        """Cross-fitting needs one teacher per task, a student that reads it, and the same rows."""
        where = f"methods.{method.name}.{FOLDS_KEY}"
        if method.teachers > 1:
            raise BamError(f"{where}: not with an ensemble of {method.teachers} teachers per task")
        if student.lambda_schedule == "gold":
            raise BamError(f"{where}: a lambda_schedule: gold student reads no teacher outputs")
        for task in self.tasks:
            name = get_task(task).name
            teacher = self.teacher_config(task, self.seeds[0])  # its own, with teacher.per_task
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
_TEACHER_SET = {k: v for k, v in SECTION.elsewhere.items() if k not in TEACHER_KEYS}
TEACHER = KeyPlace((*_SETTINGS, *TEACHER_KEYS), _TEACHER_SET)  # per_task: that task's teachers
METHOD = KeyPlace((*_SETTINGS, *METHOD_KEYS), _TO_TOP)


def _task_name(key: str) -> str | None:
    """The own name of the task ``key`` names (RTE, sts-b, a custom task's file), else None."""
    try:
        return get_task(key).name
    except BamError:
        return None


def preset_path(name: str) -> Path:
    folder = Path(str(importlib.resources.files("bam") / "config" / "presets"))
    path = folder / f"{name}.yaml"
    if "/" in name or "\\" in name or not path.is_file():  # a name, never a path out of presets/
        available = sorted(p.stem for p in folder.glob("*.yaml"))
        raise BamError(f"unknown preset {name!r} (available: {', '.join(available)})")
    return path


def load_run_config(preset: str | None, config_file: str | None, overrides: list[str]) -> RunConfig:
    """Preset < config file < ``key=value`` overrides; with neither preset nor file, the demo.
    A top-level ``precision`` is every stage's: ``train.precision``."""
    values: dict[str, Any] = {}
    if preset is None and not config_file:
        preset = "demo"
    if preset is not None:  # `--preset ''` is refused by name, not taken for the demo
        values = read_yaml(preset_path(preset))
    if config_file:
        values = deep_merge(values, read_yaml(config_file))
    values = deep_merge(values, parse_overrides(overrides))
    if "precision" in values:  # `bam run precision=bf16`: every stage's, as train.precision
        train = values.get("train")
        values["train"] = {**(train if isinstance(train, dict) else {}), "precision": values.pop("precision")}
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
