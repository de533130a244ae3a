"""``bam run --dry-run``: check a run config and print what it would do, without training.

Works offline: rows come from the data files when they are here, else from the GLUE table's
official counts; the model's size comes from its config when it can be read, else from a small
table of published encoder sizes. FLOPs are an estimate (6 × non-embedding parameters × tokens:
:meth:`bam.flops.FlopModel.estimate`); seconds come from them and rates measured here, by timing
a few training steps and inference batches of the run's model on this device in the run's
precision (:mod:`bam.experiment.timing`; ``--no-calibrate`` skips it): a stage's time counts its
training steps, its dev evaluations and the teacher outputs recorded from it. For a run folder
that already exists it also says which
stages are trained, which will resume from a checkpoint, and which are still to train (a run
spread over days, or one still going). The stages are the run's own graph
(:func:`bam.experiment.graph.build_graph`), placed in their folders as ``bam run`` places them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bam.config.run import RunConfig
from bam.config.train import TrainConfig
from bam.data.batching import steps_per_epoch, task_shares
from bam.data.examples import Examples
from bam.data.load import is_hub, load_examples
from bam.data.prepare import fold_assignment, training_rows
from bam.errors import BamError
from bam.experiment.graph import Read, Role, SeedGraph, Stage, build_graph
from bam.experiment.jobs import phase_threads
from bam.experiment.record import NotRecorded
from bam.experiment.stages import place
from bam.experiment.timing import Rates, Rows, Work, evaluations, measure_rate
from bam.flops import FlopModel, encoder_flop_model
from bam.model import default_device
from bam.precision import Precision, resolve_precision
from bam.tasks import get_task
from bam.train.checkpoint import checkpoint_progress, finished_run

FALLBACK_TOKENS = 48  # mean tokens per row assumed for data that is not here


@dataclass
class TaskPlan:
    name: str
    rows: int
    tokens_per_row: float
    source: str  # "files" or "expected"
    unread: str = ""  # why the files were not read, for "expected"


def _task_plan(task_name: str, config: TrainConfig) -> TaskPlan:
    task = get_task(task_name)
    cap = config.train_cap.get(task.name)
    doubled = 2 if task.name in config.both_orders else 1
    try:
        if is_hub(config.data_dir) and task.root is None:
            raise BamError("a dry run does not download")  # planned from the official counts
        examples = training_rows(task, config)
    except BamError as err:
        rows = task.expected_rows.get("train")
        if rows is None:
            raise
        rows = min(rows, cap or rows)
        if config.cv_folds:  # a fold teacher: fold cv_holdout left out
            rows = int(np.count_nonzero(fold_assignment(rows, config.cv_folds) != config.cv_holdout))
        return TaskPlan(task.name, rows * doubled, FALLBACK_TOKENS, "expected", str(err))
    return TaskPlan(task.name, len(examples), _tokens_per_row(examples, config.max_length), "files")


def _tokens_per_row(examples: Examples, max_length: int) -> float:
    """Mean tokens per row, from the words of the first 2,000 rows."""
    words = sum(len(t.split()) for column in examples.texts for t in column[:2000])
    sample = min(len(examples), 2000)
    return min(max_length, 1.3 * words / max(sample, 1) + 1 + len(examples.texts))


def _dev_rows(task_name: str, config: TrainConfig) -> tuple[Rows, ...]:
    """The labelled dev splits a stage of ``config`` evaluates ``task_name`` on (rows, tokens per
    row), as :func:`bam.inference.evaluate.load_eval_splits` reads them; official counts for
    data that is not here."""
    task = get_task(task_name)
    splits = []
    for split in task.dev_splits:
        try:
            if is_hub(config.data_dir) and task.root is None:
                raise BamError("a dry run does not download")
            examples = load_examples(task, split, config.data_dir)
        except BamError:
            rows = task.expected_rows.get(split)
            if rows:
                splits.append((rows, float(min(FALLBACK_TOKENS, config.max_length))))
            continue
        if examples.labels is not None and len(examples):
            splits.append((len(examples), _tokens_per_row(examples, config.max_length)))
    return tuple(splits)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def stage_work(
    stage: Stage, plans: list[TaskPlan], model: FlopModel, recorded: tuple[Rows, ...] = ()
) -> Work:
    """What ``stage`` computes on the rows of ``plans`` (its tasks'): training steps as the loop
    counts them, dev evaluations as it makes them, and ``recorded``, the outputs read from it."""
    config = stage.config
    per_epoch = steps_per_epoch([p.rows for p in plans], config.batch_size)
    steps = max(1, math.ceil(config.epochs * per_epoch))
    tokens = config.epochs * sum(p.rows * p.tokens_per_row for p in plans)
    dev = tuple(split for task in config.tasks for split in _dev_rows(task, config))
    count = evaluations(steps, per_epoch, config.eval_every)
    return Work(steps, model.estimate(tokens), count, config.eval_batch_size, dev, recorded)


def recorded_outputs(stages: tuple[Stage, ...], plans: dict[str, TaskPlan]) -> dict[str, tuple[Rows, ...]]:
    """Per stage label, the teacher-output files recorded from it for the students that read it
    (rows, tokens per row, from ``plans``: the students' rows by task): one per stage and task,
    since a file is cached and reused; a fold teacher records on the rows it held out only."""
    files: dict[tuple[str, str], Rows] = {}
    for stage in stages:
        spelled = dict(zip(stage.tasks, stage.config.tasks, strict=True))  # own name -> as configured
        for task, reads in stage.reads.items():
            plan = plans[spelled[task]]
            share = len(reads.stages) if reads.how is Read.CROSS_FIT else 1
            for label in reads.stages:
                files.setdefault((label, task), (math.ceil(plan.rows / share), plan.tokens_per_row))
    recorded: dict[str, tuple[Rows, ...]] = {}
    for (label, _), rows in files.items():
        recorded[label] = (*recorded.get(label, ()), rows)
    return recorded


def _stage_line(
    label: str, config: TrainConfig, rows: int, work: Work, rates: Rates | None, model: FlopModel
) -> tuple[str, float]:
    """A stage's line of the plan (``rows``: its training rows) and its estimated seconds (0
    without rates)."""
    seconds = work.seconds(rates, model) if rates is not None else 0.0
    checkpoints = work.steps // config.checkpoint_every if config.checkpoint_every else 0
    schedule = config.lambda_schedule
    if config.lambda_horizon < 1:  # the schedule ends early: gold labels alone after it
        schedule += f" to {config.lambda_horizon:.0%}"
    return (
        f"  {label:<28} rows {rows:>8,}  steps {work.steps:>7,}  batch {config.batch_size:>4}  "
        f"lr {config.learning_rate:.0e}  λ {schedule:<8} checkpoints {checkpoints:>4}  "
        f"~{work.flops / 1e15:,.2f} PFLOP" + (f"  ~{_duration(seconds)}" if rates is not None else ""),
        seconds,
    )


def _precision_line(stages: tuple[Stage, ...]) -> str:
    """The precision each stage will train in on this machine, and why (bam.precision)."""
    device = default_device()
    chosen: dict[Precision, list[str]] = {}
    for stage in stages:
        chosen.setdefault(resolve_precision(stage.config.precision, device), []).append(stage.label)
    if len(chosen) == 1:
        ((only, _),) = chosen.items()
        return f"precision: {only.name} for every stage ({only.reason})"
    return "precision: " + "; ".join(
        f"{p.name} ({p.reason}): {', '.join(labels)}" for p, labels in chosen.items()
    )


def describe_plan(config: RunConfig, jobs: int = 1, calibrate: bool = False) -> str:
    """The run's tasks, then one line per stage of its first seed's graph (rows, steps, compute,
    time), then how ``--jobs`` schedules them: what ``bam run`` will train, before it trains.
    ``calibrate``: time a few training steps and inference batches here for the time estimate
    (:func:`bam.experiment.timing.measure_rate`)."""
    graph = build_graph(config)
    first = graph.seeds[0]
    teacher = config.teacher_config(config.tasks[0], first.seed)
    model, size_source = encoder_flop_model(teacher.model, teacher.encoder_overrides)
    description = config.description.strip()
    lines = [description, ""] if description else []
    lines += [
        f"plan: {len(config.tasks)} tasks × {len(config.seeds)} seed(s), "
        f"{graph.teachers_per_task} teacher(s) per task"
        f"{''.join(f' + {k} fold teachers' for k in graph.fold_counts)}; model {teacher.model} "
        f"({model.parameters / 1e6:,.0f}M non-embedding parameters, {size_source})",
        _precision_line(first.stages),
        "",
        "tasks (training rows as the students see them):",
    ]
    students = [stage for stage in first.stages if stage.role is Role.STUDENT]
    student = students[0].config if students else teacher
    plans = {name: _task_plan(name, student) for name in config.tasks}
    method_configs: dict[str, TrainConfig] = {}  # each method's first student
    for stage in students:
        method_configs.setdefault(str(stage.method), stage.config)
    lines += _task_lines(plans, student, method_configs)
    lines += ["", "stages per seed:"]
    rates, why = _calibration(student, model) if calibrate else (None, "--no-calibrate")
    recorded = recorded_outputs(first.stages, plans)
    total = 0.0
    seconds = {Role.TEACHER: 0.0, Role.STUDENT: 0.0}
    inference = [0.0, 0.0]  # dev evaluation, teacher outputs: seconds per seed
    for stage in first.stages:
        if stage.role is Role.STUDENT:  # the rows of the students' plan, above
            task_plans = [plans[task] for task in stage.config.tasks]
        else:
            task_plans = [_task_plan(task, stage.config) for task in stage.config.tasks]
        work = stage_work(stage, task_plans, model, recorded.get(stage.label, ()))
        rows = sum(p.rows for p in task_plans)
        line, stage_seconds = _stage_line(stage.title, stage.config, rows, work, rates, model)
        lines.append(line)
        total += work.flops
        seconds[Role.STUDENT if stage.role is Role.STUDENT else Role.TEACHER] += stage_seconds
        if rates is not None:
            inference[0] += work.evaluation_seconds(rates, model)
            inference[1] += work.recording_seconds(rates, model)
    lines += [
        "",
        f"estimated training compute: ~{total * len(config.seeds) / 1e15:,.1f} PFLOP for all seeds "
        "(training steps only: 6 × non-embedding parameters × tokens; padding, attention, "
        "evaluation and teacher outputs not counted)",
        *_time_lines(rates, why, seconds[Role.TEACHER], seconds[Role.STUDENT], len(config.seeds), inference),
        f"methods compared: {', '.join(config.methods)}",
        _order_line(first, len(config.seeds), jobs),
    ]
    return "\n".join(lines)


def _calibration(config: TrainConfig, model: FlopModel) -> tuple[Rates | None, str]:
    """:func:`measure_rate`, or why there are no rates (a model that cannot be loaded offline)."""
    try:
        return measure_rate(config, model), ""
    except (BamError, OSError) as err:
        return None, f"{config.model} could not be built here: {str(err).splitlines()[0]}"


def _time_lines(
    rates: Rates | None, why: str, teachers: float, students: float, seeds: int, inference: list[float]
) -> list[str]:
    """The estimated wall time per seed and for the run, one stage at a time, and how it was had
    (``inference``: the seconds per seed of dev evaluation and of recording teacher outputs)."""
    if rates is None:
        return [f"estimated time: not measured ({why})"]
    per_seed = teachers + students
    evaluating, recording = inference
    return [
        f"estimated time per seed: ~{_duration(per_seed)} (teachers ~{_duration(teachers)}, "
        f"students ~{_duration(students)}); all {seeds} seed(s): ~{_duration(per_seed * seeds)}, "
        "one stage at a time on this machine",
        f"  rate {rates.how}; counted: training steps, dev evaluation (~{_duration(evaluating)} per seed) "
        f"and teacher outputs (~{_duration(recording)} per seed); tokenization and checkpoints not counted",
    ]


def _task_lines(
    plans: dict[str, TaskPlan], student: TrainConfig, configs: dict[str, TrainConfig]
) -> list[str]:
    """Each task's rows and sampling share as ``student`` draws them, the files not read, and the
    shares of each method whose student (``configs``: method -> a stage's config) draws otherwise."""
    rows = {name: plan.rows for name, plan in plans.items()}
    shares = task_shares(rows, student.sampling_alpha, student.sampling_boost)
    lines = []
    width = max(6, *(len(name) for name in plans))  # mnli-pool, custom tasks' names
    for name, plan in plans.items():
        lines.append(
            f"  {name:<{width}} rows {plan.rows:>8,} ({plan.source})  ~{plan.tokens_per_row:.0f} tokens/row  "
            f"sampling share {100 * shares[name]:5.1f}% (α={student.sampling_alpha}"
            + (f", ×{student.sampling_boost[name]:g})" if name in student.sampling_boost else ")")
        )
    unread: dict[str, list[str]] = {}  # a wrong data_dir shows here, not hours later
    for plan in plans.values():
        if plan.unread:
            unread.setdefault(plan.unread, []).append(plan.name)
    for why, names in unread.items():
        lines.append(f"  {', '.join(names)}: not read, planned from the official row counts ({why})")
    for method, other in configs.items():  # students that draw tasks otherwise than the one shown above
        if (other.sampling_alpha, other.sampling_boost) != (student.sampling_alpha, student.sampling_boost):
            mine = task_shares(rows, other.sampling_alpha, other.sampling_boost)
            lines.append(
                f"  {method}: "
                + ", ".join(f"{n} {100 * v:.1f}%" for n, v in mine.items())
                + f" (α={other.sampling_alpha}"
                + "".join(f", {n} ×{w:g}" for n, w in other.sampling_boost.items())
                + ")"
            )
        if other.sampling == "adaptive":
            every = other.sampling_update_every
            when = f"every {every} steps" if every else "at each epoch's start"
            behind = "λ·gold + (1−λ)·teacher" if other.sampling_lag_target == "annealed" else "its target"
            lines.append(
                f"  {method}: these shares first, then each task's × g(its lag behind {behind}, over the"
                f" {other.sampling_lag_scale} lag), re-measured {when}"
            )
    return lines


def _order_line(graph: SeedGraph, seeds: int, jobs: int) -> str:
    """How ``bam run`` (with ``--jobs``) will schedule the stages listed above: the graph's waves
    (:meth:`SeedGraph.waves`), every seed's wave together; students that read or start from other
    students train in a later round than those, each round named by its methods."""
    waves = [wave for wave in graph.waves() if wave]
    rounds = sum(1 for wave in waves if wave[0].role is Role.STUDENT)
    if jobs == 1:
        later = (
            f"; students in {rounds} rounds, each after those it reads or starts from" if rounds > 1 else ""
        )
        return (
            f"order: one stage at a time, seed by seed, teachers first ({len(graph.stages)} stages per "
            f"seed{later}); --jobs N trains N at once"
        )

    def phase(wave: list[Stage]) -> str:
        count = len(wave) * seeds
        what, named = "teacher", ""
        if wave[0].role is Role.STUDENT:
            methods = dict.fromkeys(str(stage.method) for stage in wave)
            what, named = "student", f" [{', '.join(methods)}]" if rounds > 1 else ""
        return (
            f"all {count} {what} stages {min(jobs, count)} at a time "
            f"({phase_threads(jobs, count)} thread(s) each on CPU){named}"
        )

    return f"order (--jobs {jobs}): {', then '.join(map(phase, waves))}; one GPU is shared"


def stage_status(folder: Path) -> tuple[bool, str]:
    """Whether the stage in ``folder`` is trained, and a few words on where it stands."""
    done = finished_run(folder, tidy=False)  # a dry run writes nothing
    if done is not None:
        return True, f"trained ({done.get('seconds', 0.0):,.0f} s)"
    progress = checkpoint_progress(folder)
    if progress is not None and progress.get("total_steps"):
        return False, f"checkpoint at step {progress['step']:,} of {progress['total_steps']:,}"
    return False, "to train"


def _seed_progress(graph: SeedGraph, root: Path) -> list[tuple[str, bool, str]]:
    """Every stage of one seed: its folder name (a student not yet keyed: its title), whether it
    is trained, and where it stands."""
    folders: dict[str, Path] = {}
    rows = []
    for stage in graph.stages:
        try:
            folder, _ = place(stage, root, folders, record=False)
        except NotRecorded:
            rows.append((f"{stage.title} s{graph.seed}", False, "to train, after its teachers' outputs"))
            continue
        folders[stage.label] = folder
        rows.append((folder.name, *stage_status(folder)))
    return rows


def describe_progress(config: RunConfig, root: Path) -> str:
    """Where the run folder ``root`` stands on this plan, stage by stage; reads, writes nothing.

    A student's folder name depends on its teachers' outputs, which a dry run does not record: a
    student whose outputs are not there yet is listed by method, to train after its teachers."""
    per_seed = {seed.seed: _seed_progress(seed, root) for seed in build_graph(config).seeds}
    rows = [row for seed_rows in per_seed.values() for row in seed_rows]
    lines = [f"progress in {root}: {sum(done for _, done, _ in rows)} of {len(rows)} stages trained"]
    for seed, seed_rows in per_seed.items():
        lines += [f"  seed {seed}", *(f"    {name:<44} {status}" for name, _, status in seed_rows)]
    return "\n".join(lines)
