"""The stages of a ``bam run``, built once from its :class:`~bam.config.run.RunConfig`.

A stage is one training run: its role, its label (the folder name before its key), its tasks,
seed and :class:`~bam.config.train.TrainConfig`, and ``reads``: per task, the stages whose
outputs it learns from and how. ``bam run`` trains the graph (:mod:`bam.experiment.run`),
``--dry-run`` prints it (:mod:`bam.experiment.plan`); neither works a stage out by itself.

Per seed and task: the task's teacher (member 0, Single's), ensemble members (seeds seed+1000·i,
as many as the largest ensemble some method reads), and k fold teachers for each fold count k
some method cross-fits with; then each student method's stages, a method taught by another
method's students (``teacher: multi``: Multi→Multi, a second round) after that method's: it
reads, per task, the one stage of that method that trained on the task (its head). A method that
starts from another's models (``init_from: bam``: fine-tuning after multi-task training) comes
after it too: each of its stages ``starts_from`` the stage of that method that trained its tasks.
``reads`` and ``starts_from`` name earlier stages by label, and running, planning and ``--jobs``
follow them (:meth:`SeedGraph.waves`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from bam.config.run import Method, RunConfig
from bam.config.train import TrainConfig
from bam.tasks import get_task

MEMBER_SEED_STEP = 1000  # ensemble member i of seed s trains with seed s + 1000·i


class Role(Enum):
    TEACHER = "teacher"  # a task's own teacher (ensemble member 0): Single's, when Single is compared
    MEMBER = "ensemble member"  # member i ≥ 1 of a task's teacher ensemble
    FOLD = "fold teacher"  # a teacher trained without one fold of its task's rows (cross-fitting)
    STUDENT = "student"  # a method's student: all tasks together, or one task (per_task)

    @property
    def is_teacher(self) -> bool:
        return self is not Role.STUDENT


class Read(Enum):
    """How a stage reads the outputs of the stages it names, on its own training rows."""

    AVERAGE = "average"  # each stage's own outputs; several (an ensemble) are averaged
    CROSS_FIT = "cross-fit"  # row r from the fold teacher that held r out; stages in fold order


@dataclass(frozen=True)
class Reads:
    how: Read
    stages: tuple[str, ...]  # labels of stages of the same seed graph


@dataclass(frozen=True)
class Stage:
    role: Role
    label: str  # the folder name before its key: teacher-rte-s13, bam-all-s13, ...
    tasks: tuple[str, ...]  # task names (a task given by alias or YAML path: its own name)
    seed: int  # the seed it trains with (an ensemble member: seed + 1000·i)
    config: TrainConfig  # as it trains, less the teacher outputs it reads (recorded once known)
    method: str | None = None  # a student's method; "single" for Single's teacher; else None
    reads: Mapping[str, Reads] = field(default_factory=dict)  # task name -> whose outputs, how
    taught_by: str | None = None  # the method whose students it reads; None: the task teachers
    init_from: str | None = None  # the method whose model it starts from; None: the encoder's weights
    starts_from: str | None = None  # the label of that method's stage whose weights it starts from

    @property
    def after(self) -> tuple[str, ...]:
        """The labels of the stages it needs trained first: those it reads, the one it starts from."""
        read = (label for reads in self.reads.values() for label in reads.stages)
        return (*read, *([self.starts_from] if self.starts_from else []))

    @property
    def title(self) -> str:
        """What a plan calls it: ``teacher rte s13``, ``teacher rte s13 fold 0/2``, ``bam rte+stsb``
        (tasks as the run config spells them), ``bam2 rte+stsb ← bam`` (taught by bam's student),
        ``bam_ft rte ⇐ bam`` (starts from bam's student)."""
        tasks = "+".join(self.config.tasks)
        if self.role is Role.STUDENT:
            taught = f" ← {self.taught_by}" if self.taught_by else ""
            return f"{self.method} {tasks}{taught}" + (f" ⇐ {self.init_from}" if self.init_from else "")
        fold = f" fold {self.config.cv_holdout}/{self.config.cv_folds}" if self.role is Role.FOLD else ""
        return f"teacher {tasks} s{self.seed}{fold}"


@dataclass(frozen=True)
class SeedGraph:
    seed: int
    stages: tuple[Stage, ...]  # in training order: every stage after the stages it reads

    def stage(self, label: str) -> Stage:
        return next(stage for stage in self.stages if stage.label == label)

    def waves(self) -> list[list[Stage]]:
        """The stages in rounds that do not depend on each other: the teachers, then the students
        that read only teachers (or nothing), then students that read or start from those students,
        and so on."""
        wave: dict[str, int] = {}
        for stage in self.stages:
            wave[stage.label] = (
                0 if stage.role.is_teacher else 1 + max((wave[label] for label in stage.after), default=0)
            )
        rounds: list[list[Stage]] = [[] for _ in range(max(wave.values(), default=-1) + 1)]
        for stage in self.stages:
            rounds[wave[stage.label]].append(stage)
        return rounds


@dataclass(frozen=True)
class RunGraph:
    seeds: tuple[SeedGraph, ...]  # in the run's order
    methods: tuple[str, ...]  # the comparison's columns, in order
    teachers_per_task: int  # ensemble members trained per task and seed (0: no method reads them)
    fold_counts: tuple[int, ...]  # each fold count some method cross-fits with, ascending


def build_graph(config: RunConfig) -> RunGraph:
    """The stages of every seed of ``config``'s run (a validated config: load_run_config)."""
    methods = config.method_specs()
    students = [m for m in methods if not m.is_single]
    probe = {m.name: config.student_config(m, config.tasks, config.seeds[0]) for m in students}
    # Ensemble members: as many as the largest ensemble whose own outputs some student reads.
    counts = [1] if any(m.is_single for m in methods) else []
    counts += [
        m.teachers
        for m in students
        if not (m.teacher_folds or m.reads_a_method) and probe[m.name].lambda_schedule != "gold"
    ]
    members = max(counts, default=0)
    folds = tuple(sorted({m.teacher_folds for m in students} - {0}))
    return RunGraph(
        seeds=tuple(SeedGraph(seed, build_seed(config, seed, members, folds)) for seed in config.seeds),
        methods=tuple(m.name for m in methods),
        teachers_per_task=members,
        fold_counts=folds,
    )


def build_seed(config: RunConfig, seed: int, members: int, fold_counts: tuple[int, ...]) -> tuple[Stage, ...]:
    """One seed's stages: every task's teachers (members, then fold teachers), then the students."""
    teachers = [
        stage for task in config.tasks for stage in _teachers(config, task, seed, members, fold_counts)
    ]
    return (*teachers, *_students(config, seed, teachers))


def _teachers(
    config: RunConfig, task: str, seed: int, members: int, fold_counts: tuple[int, ...]
) -> list[Stage]:
    """``task``'s ensemble members (member 0: Single's teacher), then its fold teachers."""
    name = get_task(task).name  # folders and keys use a task's own name
    single = "single" in config.methods
    stages = []
    for member in range(members):
        teacher = config.teacher_config(task, seed + MEMBER_SEED_STEP * member)
        role, method = (Role.TEACHER, "single" if single else None) if member == 0 else (Role.MEMBER, None)
        stages.append(Stage(role, f"teacher-{name}-s{teacher.seed}", (name,), teacher.seed, teacher, method))
    for k in fold_counts:
        for holdout in range(k):
            teacher = config.fold_teacher_config(task, seed, k, holdout)
            stages.append(
                Stage(Role.FOLD, f"teacher-{name}-s{seed}-fold{holdout}of{k}", (name,), seed, teacher)
            )
    return stages


def _teaching_order(config: RunConfig) -> list[Method]:
    """The student methods, each after the methods whose students it reads or starts from (else
    as listed)."""
    methods = {m.name: m for m in config.method_specs() if not m.is_single}

    def depth(method: Method) -> int:  # rounds of students before it (a validated config: no cycle)
        return max((1 + depth(methods[name]) for name in method.sources if name in methods), default=0)

    return sorted(methods.values(), key=depth)


def _students(config: RunConfig, seed: int, teachers: list[Stage]) -> list[Stage]:
    """Each student method's stages; one that distils reads, per task, its ensemble's first
    ``teachers`` members, the ``teacher_folds`` fold teachers (cross-fitted), or the stage of
    its ``teacher`` method that trained on the task; one with ``init_from`` starts from the stage
    of that method (a teacher, for single) that trained on its tasks."""
    stages: list[Stage] = []
    for method in _teaching_order(config):
        groups = method.student_groups(config.tasks)
        for tasks in groups:
            student = config.student_config(method, tasks, seed)
            names = tuple(get_task(task).name for task in tasks)
            reads: dict[str, Reads] = {}
            for name in names if student.lambda_schedule != "gold" else ():
                mine = [t for t in teachers if t.tasks == (name,)]
                if method.reads_a_method:
                    taught = next(s for s in stages if s.method == method.teacher and name in s.tasks)
                    reads[name] = Reads(Read.AVERAGE, (taught.label,))
                elif method.teacher_folds:
                    folds = [
                        t.label
                        for t in mine
                        if t.role is Role.FOLD and t.config.cv_folds == method.teacher_folds
                    ]
                    reads[name] = Reads(Read.CROSS_FIT, tuple(folds))
                else:
                    own = [t.label for t in mine if t.role in (Role.TEACHER, Role.MEMBER)]
                    reads[name] = Reads(Read.AVERAGE, tuple(own[: method.teachers]))
            label = f"{method.name}-{'-'.join(names) if len(groups) > 1 else 'all'}-s{seed}"
            taught_by = method.teacher if method.reads_a_method else None
            start = None
            if method.init_from is not None:  # its tasks' stage of that method (validated: there is one)
                sources = [s for s in [*teachers, *stages] if s.method == method.init_from]
                start = next(s.label for s in sources if set(names) <= set(s.tasks))
            origin = (taught_by, method.init_from, start)  # whom it learns from, where it starts
            stages.append(Stage(Role.STUDENT, label, names, seed, student, method.name, reads, *origin))
    return stages
