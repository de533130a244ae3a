"""The one writer of a run folder's results: ``results.json``, ``seeds/<n>/results.json`` and
``bam_run.json``, for ``bam run`` and for merges of runs alike.

``results.json`` holds medians over seeds (the paper reports medians); each seed's file is written
as soon as that seed is done, so a run spread over days can be merged seed by seed.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bam.fileio import atomic_write_json, claim_folder, fingerprint
from bam.train.checkpoint import read_done

RUN_FILE = "bam_run.json"  # marks a folder as a bam run and holds its configuration
METRIC = "bam_avg"


def config_key(config: dict[str, Any]) -> str:
    """The run configuration's fingerprint, seeds aside: it tells which seed results belong together."""
    return fingerprint(without_seeds(config))


def without_seeds(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration as its seeds share it: what keys, seed files and merges compare."""
    return {key: value for key, value in config.items() if key != "seeds"}


def ran_on(done: dict[str, Any]) -> str:
    """The precision a finished stage trained in, why, and on what machine, from its
    ``train_done.json``: seeds merged from several machines differ here."""
    precision = done.get("precision", "precision not recorded")
    reason = f" ({done['precision_reason']})" if done.get("precision_reason") else ""
    return f"{precision}{reason} on {done.get('hardware', 'unrecorded hardware')}"


def stage_machines(stages: dict[int, dict[str, list[str]]]) -> dict[str, str]:
    """:func:`ran_on` for every finished stage of every seed, by stage name."""
    machines = {}
    for paths in (p for methods in stages.values() for p in methods.values()):
        for stage in map(Path, paths):
            done = read_done(stage)
            if done is not None:
                machines[stage.name] = ran_on(done)
    return machines


def median_table(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Median over seeds of every method × task score."""
    first = next(iter(per_seed.values()))
    return {
        method: {key: statistics.median(run[method][key] for run in per_seed.values()) for key in scores}
        for method, scores in first.items()
    }


def claim_run_folder(root: Path, overwrite: bool, remedy: str = "use --overwrite to replace it") -> None:
    """Refuse a folder that holds something other than a bam run, unless told to overwrite.

    A folder holding only ``stages`` (say, a link to another run's stages) is a run to be: stages
    are keyed by content, so a second configuration (an ablation) reuses the first one's teachers
    without rewriting that run's results."""
    claim_folder(
        root,
        overwrite,
        ours=(root / RUN_FILE).is_file(),
        also_empty={"stages"},
        what="bam run",
        remedy=remedy,
        replace_ours=False,
    )


def write_run_file(root: Path, config: dict[str, Any], **extra: Any) -> None:
    atomic_write_json(root / RUN_FILE, {"config": config, **extra})


def write_seed_results(
    root: Path, seed: int, config: dict[str, Any], methods: dict[str, Any], stages: dict[str, list[str]]
) -> None:
    """One finished seed, with the configuration (seeds aside) that trained it: a run that later
    adds methods to its folder rewrites ``bam_run.json``, and a merge still takes this seed on the
    methods both configurations share."""
    atomic_write_json(
        root / "seeds" / str(seed) / "results.json",
        {
            "metric": METRIC,
            "seed": seed,
            "config_key": config_key(config),
            "config": without_seeds(config),
            "methods": methods,
            "stages": stages,
        },
    )


def write_results(
    root: Path,
    per_seed: dict[int, dict[str, dict[str, float]]],
    stages: dict[int, dict[str, list[str]]],
    config: dict[str, Any],
    **details: Any,
) -> dict[str, Any]:
    """``results.json``: medians over ``per_seed``, then the details (each seed's scores and stages,
    what ``details`` adds, the configuration last). Returns what it wrote."""
    seeds = list(per_seed)
    results = {
        "metric": METRIC,
        "methods": median_table(per_seed),
        "details": {
            "seeds": seeds,
            "per_seed": {str(s): per_seed[s] for s in seeds},
            "stages": {str(s): stages[s] for s in seeds},
            **details,
            "config": config,
        },
    }
    atomic_write_json(root / "results.json", results)
    return results
