"""``bam run``: teachers → teacher outputs → students → one comparison table.

The run is its stage graph (:mod:`bam.experiment.graph`), built once and trained wave by wave.
Each stage lives in ``DIR/stages/<label>-<fingerprint>/`` where the fingerprint covers everything
that produced it (:func:`bam.train.keys.run_keys`: the settings that decide its weights, its training
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
from bam.experiment.baselines import TEACHER_MARGIN, constant_baselines
from bam.experiment.graph import RunGraph, SeedGraph, Stage, build_graph
from bam.experiment.jobs import phase_threads
from bam.experiment.results import (
    claim_run_folder,
    stage_machines,
    write_results,
    write_run_file,
    write_seed_results,
)
from bam.experiment.stages import check_stage_name, place
from bam.experiment.stages import stage_dir as stage_dir  # where bam run's stages live, for callers
from bam.tasks.metrics import bam_average
from bam.train.checkpoint import checkpoint_progress, finished_run
from bam.train.loop import train

log = logging.getLogger("bam")
PROGRESS_SECONDS = 600.0  # how often `--jobs` reports the stages it is training
Placed = tuple[Path, TrainConfig]  # a stage's folder and the configuration that trains it


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


def place_wave(wave: list[Stage], root: Path, folders: dict[str, Path]) -> list[Placed]:
    """Every stage of a wave placed (a student's teacher outputs recorded first: the stages it
    reads are trained), before any of them trains; ``folders`` gains their folders."""
    placed = [place(stage, root, folders) for stage in wave]
    folders.update((stage.label, folder) for stage, (folder, _) in zip(wave, placed, strict=True))
    return placed


def run_seed(
    graph: SeedGraph, methods: tuple[str, ...], root: Path, quiet: bool, state: RunState
) -> dict[str, Any]:
    """Every stage of one seed: ``{method: {task: score, "avg": score}}`` plus the stage folders
    (under ``single``: every teacher's; under each other method: its students')."""
    folders: dict[str, Path] = {}
    scores: dict[str, dict[str, float]] = {method: {} for method in methods}
    stages_run: dict[str, list[str]] = {"single": []}
    for wave in graph.waves():
        for stage, (folder, config) in zip(wave, place_wave(wave, root, folders), strict=True):
            summary = _run_stage(folder, config, quiet, state)
            if stage.method in scores:  # a student, or Single's own teacher
                scores[stage.method].update(summary["scores"])
            owner = "single" if stage.role.is_teacher else str(stage.method)
            stages_run.setdefault(owner, []).append(str(folder))
    results = {method: {**scores[method], "avg": bam_average(scores[method])} for method in methods}
    return {"methods": results, "stages": stages_run}


def _train_stage(job: tuple[Path, TrainConfig, int]) -> tuple[str, float]:
    """One stage in a worker process (``bam run --jobs``) on ``threads`` CPU threads: its name and
    wall time."""
    folder, config, threads = job
    torch.set_num_threads(threads)
    return folder.name, train(config, folder, quiet=True).seconds


def _train_together(stages: list[Placed], pool: Pool, jobs: int, quiet: bool, state: RunState) -> None:
    """Train the unfinished ``stages`` on the pool's processes, reporting each as it ends (a stage
    two seeds share, such as seed 1013's teacher and seed 13's second ensemble member, once)."""
    unique = {folder: config for folder, config in stages}
    todo = [(folder, config) for folder, config in unique.items() if finished_run(folder) is None]
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


def train_stages_in_parallel(graph: RunGraph, root: Path, jobs: int, quiet: bool, state: RunState) -> None:
    """``bam run --jobs N``: every seed's teachers on N processes, then every student on N (then,
    were there students of students, those: :meth:`~bam.experiment.graph.SeedGraph.waves`).

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
        waves = {seed.seed: seed.waves() for seed in graph.seeds}
        folders: dict[int, dict[str, Path]] = {seed: {} for seed in waves}
        for i in range(max(len(rounds) for rounds in waves.values())):  # every seed's teachers, ...
            placed = [
                stage
                for seed, rounds in waves.items()
                if i < len(rounds)
                for stage in place_wave(rounds[i], root, folders[seed])
            ]
            _train_together(placed, pool, jobs, quiet, state)
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
    graph = build_graph(config)
    if jobs > 1:
        train_stages_in_parallel(graph, root, jobs, quiet, state)
        if not quiet:
            log.info("every stage is trained; collecting the results")
    per_seed = {}
    stages = {}
    for seed in graph.seeds:
        outcome = run_seed(seed, graph.methods, root, quiet, state)
        per_seed[seed.seed] = outcome["methods"]
        stages[seed.seed] = outcome["stages"]
        write_seed_results(root, seed.seed, asdict(config), outcome["methods"], outcome["stages"])
    results = write_results(
        root,
        per_seed,
        stages,
        asdict(config),
        stage_seconds=state.seconds,
        stage_machines=stage_machines(stages),
        stages_trained=state.trained,
        wall_seconds=time.perf_counter() - started,
        baselines=constant_baselines(config),
        teacher_margin=TEACHER_MARGIN,
    )
    return results
