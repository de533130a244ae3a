"""``bam run --dry-run``: check a run config and print what it would do, without training.

Works offline: rows come from the data files when they are here, else from the GLUE table's
official counts; the model's size comes from its config when it can be read, else from a small
table of published encoder sizes. FLOPs are an estimate (6 × non-embedding parameters × tokens:
:meth:`bam.flops.FlopModel.estimate`); seconds come from them and a rate measured here, by timing
a few training steps of the run's model on this device in the run's precision
(:func:`measure_rate`; ``--no-calibrate`` skips it). For a run folder that already exists it also says which
stages are trained, which will resume from a checkpoint, and which are still to train (a run
spread over days, or one still going). The stages are the run's own graph
(:func:`bam.experiment.graph.build_graph`), placed in their folders as ``bam run`` places them.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bam.config.run import RunConfig
from bam.config.train import TrainConfig
from bam.data.batching import steps_per_epoch, task_shares
from bam.data.load import is_hub
from bam.data.prepare import fold_assignment, training_rows
from bam.errors import BamError
from bam.experiment.graph import Role, SeedGraph, Stage, build_graph
from bam.experiment.jobs import phase_threads
from bam.experiment.record import NotRecorded
from bam.experiment.stages import place
from bam.flops import FlopModel, encoder_flop_model
from bam.model import BamModel, default_device
from bam.precision import Precision, autocast, resolve_precision
from bam.tasks import get_task
from bam.train.checkpoint import checkpoint_progress, finished_run
from bam.train.optim import build_optimizer
from bam.train.setup import build_run_model

FALLBACK_TOKENS = 48  # mean tokens per row assumed for data that is not here
CALIBRATION_LENGTHS = (16, 64)  # tokens per row of the two timed batch shapes (at most max_length)
CALIBRATION_STEPS = 3  # timed steps per shape, after one untimed warm-up step


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
    words = sum(len(t.split()) for column in examples.texts for t in column[:2000])
    sample = min(len(examples), 2000)
    tokens = min(config.max_length, 1.3 * words / max(sample, 1) + 1 + len(examples.texts))
    return TaskPlan(task.name, len(examples), tokens, "files")


@dataclass(frozen=True)
class StepRate:
    """A training step's seconds on this machine: ``overhead`` per step plus its FLOPs (as
    :meth:`FlopModel.estimate` counts them) at ``flops_per_second``; ``how`` says where from."""

    overhead: float
    flops_per_second: float
    how: str

    def seconds(self, steps: int, flops: float) -> float:
        return steps * self.overhead + flops / self.flops_per_second


def measure_rate(config: TrainConfig, model: FlopModel) -> StepRate:
    """Time training steps of ``config``'s model (its optimizer, precision and threads, on this
    device) on random rows at two lengths; fit seconds = overhead + FLOPs / rate through them, so
    short rows' fixed cost per step is not spread over their few tokens."""
    device = default_device()
    precision = resolve_precision(config.precision, device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    tasks = [get_task(name) for name in config.tasks]
    net, _ = build_run_model(config, tasks)
    net.to(device).train()
    optimizer = build_optimizer(net, config.learning_rate, config.weight_decay, config.layerwise_decay)
    lengths = sorted({min(n, config.max_length) for n in CALIBRATION_LENGTHS})
    points = [
        (model.estimate(config.batch_size * n), _step_seconds(net, optimizer, config, n, precision, device))
        for n in lengths
    ]
    (low_flops, low_time), (high_flops, high_time) = points[0], points[-1]
    if high_time > low_time and high_flops > low_flops:
        rate = (high_flops - low_flops) / (high_time - low_time)
        overhead = max(0.0, low_time - low_flops / rate)
    else:  # one shape, or timings too noisy to separate: all of a step's time is its FLOPs'
        rate, overhead = high_flops / high_time, 0.0
    count = torch.get_num_threads()
    threads = "" if device.type != "cpu" else f", {count} thread{'s' if count > 1 else ''}"
    how = (
        f"timed here: {CALIBRATION_STEPS} training steps of {config.model} per shape, {precision.name} "
        f"on {device.type}{threads}, batch {config.batch_size} × {'/'.join(map(str, lengths))} tokens: "
        f"{overhead * 1e3:,.0f} ms per step + {rate / 1e9:,.0f} GFLOP/s (as 6 × parameters × tokens)"
    )
    return StepRate(overhead, rate, how)


def _step_seconds(
    net: BamModel,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    length: int,
    precision: Precision,
    device: torch.device,
) -> float:
    """Median seconds of a training step (forward, backward, clip, optimizer) on random token ids:
    the same matmuls as real rows of that length; data loading and evaluation are not in it."""
    head = get_task(config.tasks[0]).name
    vocab = int(net.encoder.config.vocab_size)
    ids = torch.randint(vocab, (config.batch_size, length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    times = []
    for _ in range(1 + CALIBRATION_STEPS):
        began = time.perf_counter()
        with autocast(precision, device):
            loss = net(ids, mask)[head].float().pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def _stage_line(
    label: str, config: TrainConfig, plans: list[TaskPlan], model: FlopModel, rate: StepRate | None
) -> tuple[str, float, float]:
    """A stage's line of the plan, its FLOPs and its estimated seconds (0 without a rate)."""
    rows = [p.rows for p in plans]
    steps = max(1, math.ceil(config.epochs * steps_per_epoch(rows, config.batch_size)))
    tokens = config.epochs * sum(p.rows * p.tokens_per_row for p in plans)
    flops = model.estimate(tokens)
    seconds = rate.seconds(steps, flops) if rate is not None else 0.0
    checkpoints = steps // config.checkpoint_every if config.checkpoint_every else 0
    schedule = config.lambda_schedule
    if config.lambda_horizon < 1:  # the schedule ends early: gold labels alone after it
        schedule += f" to {config.lambda_horizon:.0%}"
    return (
        f"  {label:<28} rows {sum(rows):>8,}  steps {steps:>7,}  batch {config.batch_size:>4}  "
        f"lr {config.learning_rate:.0e}  λ {schedule:<8} checkpoints {checkpoints:>4}  "
        f"~{flops / 1e15:,.2f} PFLOP" + (f"  ~{_duration(seconds)}" if rate is not None else ""),
        flops,
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
    ``calibrate``: time a few training steps here for the time estimate (:func:`measure_rate`)."""
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
    rate, why = _calibration(student, model) if calibrate else (None, "--no-calibrate")
    total = 0.0
    seconds = {Role.TEACHER: 0.0, Role.STUDENT: 0.0}
    for stage in first.stages:
        if stage.role is Role.STUDENT:  # the rows of the students' plan, above
            task_plans = [plans[task] for task in stage.config.tasks]
        else:
            task_plans = [_task_plan(task, stage.config) for task in stage.config.tasks]
        line, flops, stage_seconds = _stage_line(stage.title, stage.config, task_plans, model, rate)
        lines.append(line)
        total += flops
        seconds[Role.STUDENT if stage.role is Role.STUDENT else Role.TEACHER] += stage_seconds
    lines += [
        "",
        f"estimated training compute: ~{total * len(config.seeds) / 1e15:,.1f} PFLOP for all seeds "
        "(6 × non-embedding parameters × tokens; padding, attention and evaluation not counted)",
        *_time_lines(rate, why, seconds[Role.TEACHER], seconds[Role.STUDENT], len(config.seeds)),
        f"methods compared: {', '.join(config.methods)}",
        _order_line(first, len(config.seeds), jobs),
    ]
    return "\n".join(lines)


def _calibration(config: TrainConfig, model: FlopModel) -> tuple[StepRate | None, str]:
    """:func:`measure_rate`, or why there is no rate (a model that cannot be loaded offline)."""
    try:
        return measure_rate(config, model), ""
    except (BamError, OSError) as err:
        return None, f"{config.model} could not be built here: {str(err).splitlines()[0]}"


def _time_lines(rate: StepRate | None, why: str, teachers: float, students: float, seeds: int) -> list[str]:
    """The estimated wall time per seed and for the run, one stage at a time, and how it was had."""
    if rate is None:
        return [f"estimated time: not measured ({why})"]
    per_seed = teachers + students
    return [
        f"estimated time per seed: ~{_duration(per_seed)} (teachers ~{_duration(teachers)}, "
        f"students ~{_duration(students)}); all {seeds} seed(s): ~{_duration(per_seed * seeds)}, "
        "one stage at a time on this machine",
        f"  rate {rate.how}; evaluation, teacher outputs, tokenization and checkpoints not counted",
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
            lines.append(f"  {method}: these shares first, then each task's × g(its lag), re-measured {when}")
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
