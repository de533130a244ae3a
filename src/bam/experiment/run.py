"""``bam run``: teachers → teacher outputs → students → one comparison table.

Each stage lives in ``DIR/stages/<name>-<fingerprint>/`` where the fingerprint covers everything
that produced it (:func:`bam.train.checkpoint.run_key`: its full training configuration, its training
and dev rows, the encoder's files, and for students the teacher outputs they read). A second run
with the same configuration reuses every finished stage; a changed setting gets a new
fingerprint, so only the stages that depend on it run again. A killed run resumes: finished
stages are kept, and an unfinished one continues from its checkpoint. ``--jobs N`` trains the
stages that do not depend on each other in N processes, then collects them the same way.
A method with ``teacher_folds: k`` adds k fold teachers per task (``teacher-<task>-s<seed>-fold<i>of<k>``),
and its student reads their cross-fitted outputs (:mod:`bam.experiment.record`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import torch

from bam.config.run import RunConfig
from bam.config.train import TrainConfig
from bam.errors import BamError
from bam.experiment.record import cross_fitted_outputs, record_teacher_outputs
from bam.experiment.results import claim_run_folder, write_results, write_run_file, write_seed_results
from bam.tasks import get_task
from bam.tasks.metrics import bam_average
from bam.train.checkpoint import checkpoint_progress, finished_run, run_key
from bam.train.loop import train

log = logging.getLogger("bam")
PROGRESS_SECONDS = 600.0  # how often `--jobs` reports the stages it is training
_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_stage_name(name: str, what: str = "stage name") -> None:
    """A name that becomes a folder: no ``/``, no ``..``, nothing that could leave the run folder."""
    if not _STAGE_NAME.fullmatch(name) or ".." in name:
        raise BamError(f"{what} {name!r}: use letters, digits, '_', '-' and '.' only (it names a folder)")


def stage_dir(root: Path, name: str, config: TrainConfig) -> Path:
    """``root/stages/<name>-<run key>``; a name that could leave ``root`` (``..``, ``/``) is refused."""
    check_stage_name(name)
    folder = root / "stages" / f"{name}-{run_key(config)}"
    if not folder.resolve().is_relative_to((root / "stages").resolve()):
        raise BamError(f"stage name {name!r} leads outside {root / 'stages'}")
    return folder


Stage = tuple[Path, TrainConfig]  # a stage's folder and the configuration that trains it


@dataclass
class RunState:
    """What one ``bam run`` invocation gathers, and its hook, as it goes through the stages."""

    seconds: dict[str, float] = field(default_factory=dict)  # every stage's wall time (a resumed one: summed)
    trained: list[str] = field(default_factory=list)  # the stages this invocation trained
    on_start: Callable[[], None] | None = None  # once, before the first stage that trains (see run)

    def starting(self) -> None:
        """A stage is about to train: the hook's turn, the first time only."""
        hook, self.on_start = self.on_start, None
        if hook is not None:
            hook()


def _run_stage(folder: Path, config: TrainConfig, quiet: bool, state: RunState) -> dict[str, Any]:
    """Train unless a finished stage is already there (resuming an unfinished one); its dev summary."""
    finished = finished_run(folder)
    if finished is not None:
        if not quiet:
            log.info("stage %s: cached", folder.name)
        state.seconds[folder.name] = finished.get("seconds", 0.0)
        return finished["dev"]
    if not quiet:
        log.info("stage %s: training %s", folder.name, ",".join(config.tasks))
    result = train(config, folder, quiet=quiet, on_start=state.starting)
    state.seconds[folder.name] = result.seconds
    state.trained.append(folder.name)
    return result.dev


def teacher_stages(config: RunConfig, root: Path, seed: int) -> dict[str, list[Stage]]:
    """Per task name, its teachers' stages; member 0 is Single, the others serve ensembles, then
    come the fold teachers of each fold count some method uses (:func:`fold_members`)."""
    # A task may be given by alias or as a custom-task YAML path; folders and keys use its name.
    plan: dict[str, list[Stage]] = {}
    for task in config.tasks:
        name = get_task(task).name
        for member in range(config.teachers_needed()):
            teacher = config.teacher_config(task, seed + 1000 * member)
            plan.setdefault(name, []).append(
                (stage_dir(root, f"teacher-{name}-s{teacher.seed}", teacher), teacher)
            )
        for folds in config.fold_counts():
            for holdout in range(folds):
                teacher = config.fold_teacher_config(task, seed, folds, holdout)
                label = f"teacher-{name}-s{seed}-fold{holdout}of{folds}"
                plan.setdefault(name, []).append((stage_dir(root, label, teacher), teacher))
    return plan


def fold_members(config: RunConfig, folds: int) -> slice:
    """Where the ``folds`` fold teachers sit in a task's list of :func:`teacher_stages`."""
    start = config.teachers_needed() + sum(k for k in config.fold_counts() if k < folds)
    return slice(start, start + folds)


def _outputs_read(
    config: RunConfig, method: str, student: TrainConfig, task: str, folders: list[Path], record: bool
) -> list[str]:
    """The teacher-output files ``method``'s student reads for ``task`` (recorded first, unless
    ``record`` is false): its teachers' own outputs (several: an ensemble), or one file of
    cross-fitted outputs."""
    folds = config.teacher_folds(method)
    if folds:
        return [str(cross_fitted_outputs(folders[fold_members(config, folds)], student, task, record))]
    return [
        str(record_teacher_outputs(folder, student, task, record))
        for folder in folders[: config.teacher_count(method)]
    ]


def student_stage(
    config: RunConfig,
    root: Path,
    seed: int,
    method: str,
    tasks: list[str],
    teachers: dict[str, list[Path]],
    record: bool = True,
) -> Stage:
    """The stage of ``method``'s student on ``tasks``. A student that distils reads its teachers'
    outputs on its own training rows, recorded here first (the teachers must be trained); with
    ``record`` false nothing is recorded, and outputs not yet there are ``NotRecorded``."""
    names = {task: get_task(task).name for task in tasks}  # a custom task: path → name
    student = config.student_config(method, tasks, seed)
    if student.lambda_schedule != "gold":
        student.teacher_outputs = {
            names[task]: _outputs_read(config, method, student, task, teachers[names[task]], record)
            for task in tasks
        }
    group = "-".join(names.values()) if len(config.student_groups(method)) > 1 else "all"
    return stage_dir(root, f"{method}-{group}-s{seed}", student), student


def student_stages(
    config: RunConfig, root: Path, seed: int, teachers: dict[str, list[Path]]
) -> dict[str, list[Stage]]:
    """Per student method, its stages (:func:`student_stage`)."""
    return {
        method: [
            student_stage(config, root, seed, method, tasks, teachers)
            for tasks in config.student_groups(method)
        ]
        for method in config.methods
        if method != "single"
    }


def stage_folders(plan: dict[str, list[Stage]]) -> dict[str, list[Path]]:
    """The plan without its configurations: per name, the stage folders."""
    return {name: [folder for folder, _ in stages] for name, stages in plan.items()}


def run_seed(config: RunConfig, root: Path, seed: int, quiet: bool, state: RunState) -> dict[str, Any]:
    """Every method of one seed: ``{method: {task: score, "avg": score}}`` plus stage folders."""
    teachers = teacher_stages(config, root, seed)
    single: dict[str, float] = {}
    for stages in teachers.values():
        for member, (folder, teacher) in enumerate(stages):
            summary = _run_stage(folder, teacher, quiet, state)
            if member == 0 and "single" in config.methods:
                single.update(summary["scores"])
    teacher_folders = stage_folders(teachers)
    students = student_stages(config, root, seed, teacher_folders)
    methods: dict[str, dict[str, float]] = {}
    stages_run: dict[str, list[str]] = {"single": [str(p) for ps in teacher_folders.values() for p in ps]}
    for method in config.methods:
        if method == "single":
            methods["single"] = {**single, "avg": bam_average(single)}
            continue
        merged: dict[str, float] = {}
        for folder, student in students[method]:
            merged.update(_run_stage(folder, student, quiet, state)["scores"])
            stages_run.setdefault(method, []).append(str(folder))
        methods[method] = {**merged, "avg": bam_average(merged)}
    return {"methods": methods, "stages": stages_run}


def _train_stage(job: tuple[Path, TrainConfig, int]) -> tuple[str, float]:
    """One stage in a worker process (``bam run --jobs``) on ``threads`` CPU threads: its name and
    wall time."""
    folder, config, threads = job
    torch.set_num_threads(threads)
    return folder.name, train(config, folder, quiet=True).seconds


def phase_threads(jobs: int, stages: int) -> int:
    """CPU threads per process when ``stages`` stages share ``jobs`` processes: fewer stages than
    processes (a lone student) get the idle cores too. One on a GPU, which they share."""
    return 1 if torch.cuda.is_available() else cpu_threads_per_job(min(jobs, max(stages, 1)))


def _train_together(stages: list[Stage], pool: Pool, jobs: int, quiet: bool, state: RunState) -> None:
    """Train the unfinished ``stages`` on the pool's processes, reporting each as it ends."""
    todo = [(folder, stage) for folder, stage in stages if finished_run(folder) is None]
    for folder, _ in todo:
        if not quiet:
            log.info("stage %s: queued", folder.name)
    if todo:
        state.starting()
    threads = phase_threads(jobs, len(todo))
    results = pool.imap_unordered(_train_stage, [(f, c, threads) for f, c in todo])
    waiting = {folder.name: folder for folder, _ in todo}
    while waiting:
        try:
            name, seconds = results.next(timeout=PROGRESS_SECONDS)
        except multiprocessing.TimeoutError:  # the workers train without progress bars
            if not quiet:
                log.info("%s", progress_line(list(waiting.values())))
            continue
        del waiting[name]
        state.trained.append(name)
        if not quiet:
            log.info("stage %s: trained in %.0f s", name, seconds)


def progress_line(folders: list[Path]) -> str:
    """Where the stages still training stand at their last checkpoints, with a linear estimate of
    the time each has left; stages with no checkpoint yet are counted as waiting."""
    parts, waiting = [], 0
    for folder in folders:
        progress = checkpoint_progress(folder)
        if progress is None or not progress.get("total_steps"):
            waiting += 1
            continue
        step, total, elapsed = progress["step"], progress["total_steps"], progress.get("elapsed", 0.0)
        left = elapsed / max(step, 1) * (total - step) / 60
        parts.append(f"{folder.name} step {step}/{total} (~{left:.0f} min left)")
    if waiting:
        parts.append(f"{waiting} not yet at a checkpoint")
    return "progress: " + "; ".join(parts)


def cpu_threads_per_job(jobs: int) -> int:
    """The cores each of ``jobs`` stage processes gets on CPU (at least one)."""
    return max(1, (os.cpu_count() or 1) // jobs)


def train_stages_in_parallel(config: RunConfig, root: Path, jobs: int, quiet: bool, state: RunState) -> None:
    """``bam run --jobs N``: every seed's teachers on N processes, then every student on N.

    Stages are the same as a one-process run's (same folders, same keys), so the collecting pass
    that follows finds them all trained. A small encoder leaves a big GPU mostly idle: several
    processes sharing it train faster together. On CPU each process gets cores / N threads (cores /
    stages when fewer stages than N are left to train). A
    fresh process per stage (no state carried over); a failure or Ctrl-C stops the other stages,
    which resume from their checkpoints on the next run.
    """
    context = multiprocessing.get_context("spawn")  # no forked CUDA or OpenMP state
    pool = context.Pool(jobs, maxtasksperchild=1)
    try:
        teachers = {seed: teacher_stages(config, root, seed) for seed in config.seeds}
        _train_together(
            [s for plan in teachers.values() for ss in plan.values() for s in ss], pool, jobs, quiet, state
        )
        students = [
            stage
            for seed, plan in teachers.items()
            for stages in student_stages(config, root, seed, stage_folders(plan)).values()
            for stage in stages
        ]
        _train_together(students, pool, jobs, quiet, state)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def run(
    config: RunConfig,
    root: str | Path,
    *,
    quiet: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the whole comparison and write ``results.json`` and ``report.md``; with
    ``jobs`` > 1, stages that do not depend on each other train in that many processes.

    ``on_start`` runs once, when the first stage that will really train has read its data (with
    ``jobs``: before the first processes start), so a run with nothing left to train never calls it."""
    root = Path(root)
    for method in config.methods:  # before hours of teacher training, not after
        check_stage_name(method, "methods:")
    claim_run_folder(root, overwrite)
    created = not root.exists()
    write_run_file(root, asdict(config))
    try:
        return _run(config, root, quiet, jobs, on_start)
    except BaseException:
        if created and not (root / "stages").exists():  # failed before any stage began: leave no folder
            shutil.rmtree(root, ignore_errors=True)
        raise


def _run(
    config: RunConfig, root: Path, quiet: bool, jobs: int, on_start: Callable[[], None] | None
) -> dict[str, Any]:
    started = time.perf_counter()
    state = RunState(on_start=on_start)
    if jobs > 1:
        train_stages_in_parallel(config, root, jobs, quiet, state)
        if not quiet:
            log.info("every stage is trained; collecting the results")
    per_seed = {}
    stages = {}
    for seed in config.seeds:
        outcome = run_seed(config, root, seed, quiet, state)
        per_seed[seed] = outcome["methods"]
        stages[seed] = outcome["stages"]
        write_seed_results(root, seed, asdict(config), outcome["methods"], outcome["stages"])
    results = write_results(
        root,
        per_seed,
        stages,
        asdict(config),
        stage_seconds=state.seconds,
        stages_trained=state.trained,
        wall_seconds=time.perf_counter() - started,
    )
    return results
