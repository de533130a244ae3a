"""One comparison from several run folders: seeds run on different days or machines, reported together.

A replication is often spread out: seeds 1–2 on a workstation, seed 3 on a lent GPU. Each
``bam run`` writes ``seeds/<n>/results.json`` as soon as that seed is done (the run may still be
training the next one); merging reads those, checks that every folder ran
the same configuration (seeds aside) and the same methods, and writes one ``results.json`` with
medians over all seeds, the report and the plots, exactly as a single run over all seeds would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bam.errors import BamError
from bam.experiment.results import (
    RUN_FILE,
    claim_run_folder,
    config_key,
    ran_on,
    without_seeds,
    write_results,
    write_run_file,
    write_seed_results,
)
from bam.fileio import read_json_object
from bam.train.checkpoint import read_done


def _config_without_seeds(folder: Path) -> dict[str, Any]:
    config = read_json_object(folder / RUN_FILE, "missing (not a bam run folder)").get("config") or {}
    if not config:
        raise BamError(f"{folder / RUN_FILE}: holds no run configuration")
    return without_seeds(config)


def _only(config: dict[str, Any], methods: list[str] | None, where: Path) -> dict[str, Any]:
    """``config`` restricted to ``methods`` (None: all of them); a method it lacks is an error."""
    if methods is None:
        return config
    missing = [m for m in methods if m not in config["methods"]]
    if missing:
        raise BamError(f"{where}: has no method {', '.join(missing)} (it ran {', '.join(config['methods'])})")
    return {**config, "methods": {m: config["methods"][m] for m in methods}}


def _differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _rebased(folder: Path, stage: str) -> str:
    """A stage path onto its run folder as found now (the folder may have moved since it ran)."""
    here = folder / "stages" / Path(stage).name
    return str(here.resolve()) if here.is_dir() else stage


def _check_seed_config(
    folder: Path, path: Path, result: dict[str, Any], ran: dict[str, Any], methods: list[str]
) -> None:
    """The seed's own configuration, on ``methods``, is the one ``folder`` runs now (``ran``): a run
    that went on to add or drop other methods keeps its earlier seeds. Files from before the
    configuration was kept are checked by its key, and files from before the key pass."""
    kept = result.get("config")
    if isinstance(kept, dict) and isinstance(kept.get("methods"), dict):
        differing = _differing_keys(_only(kept, methods, path), _only(ran, methods, folder))
        if differing:
            raise BamError(
                f"{path}: written by an earlier configuration of {folder} ({', '.join(differing)} differ); "
                "run it again there"
            )
        return
    key = config_key(ran)
    if result.get("config_key", key) != key:
        raise BamError(f"{path}: written by an earlier configuration of {folder}; run it again there")


def _seed_results(folder: Path, ran: dict[str, Any], methods: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    """Every finished seed of ``folder`` (which now runs ``ran``), kept to ``methods``."""
    seed_files = sorted((folder / "seeds").glob("*/results.json"))
    if not seed_files:
        raise BamError(f"{folder}: no seeds/<n>/results.json (no seed of this run has finished)")
    found = []
    for path in seed_files:
        result = read_json_object(path)
        _check_seed_config(folder, path, result, ran, methods)
        if not set(methods) <= set(result["methods"]):
            raise BamError(f"{path}: methods {sorted(result['methods'])} are not the run's")
        stages = {
            method: [_rebased(folder, stage) for stage in paths]
            for method, paths in result["stages"].items()
            if method in methods
        }
        scores = {method: result["methods"][method] for method in methods}
        found.append((path, {"seed": int(result["seed"]), "methods": scores, "stages": stages}))
    return found


def _recorded(folder: Path) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """Each seed's source, each stage's wall time and machine from ``folder``'s own ``results.json``
    (none while its first seed still trains): they stand in for stage folders that did not travel
    with it, as when merging a merged folder or a run whose stages stayed on a lent machine."""
    path = folder / "results.json"
    details = read_json_object(path).get("details") if path.is_file() else None
    details = details if isinstance(details, dict) else {}

    def kept(key: str, kind: type | tuple[type, ...]) -> dict[str, Any]:
        found = details.get(key)
        return {k: v for k, v in found.items() if isinstance(v, kind)} if isinstance(found, dict) else {}

    return kept("merged_from", str), kept("stage_seconds", (int, float)), kept("stage_machines", str)


def merge_runs(folders: list[Path], into: Path, methods: list[str] | None = None) -> dict[str, Any]:
    """Write ``into/results.json`` (medians over every seed found) and its seeds' files; the
    caller writes the report from it.

    ``methods`` keeps only those methods, so runs that ran more (a method still training on
    one machine, say) can be merged on the ones they share."""
    if into.resolve() in {f.resolve() for f in folders}:
        raise BamError(f"{into}: write the merged report to a new folder, not into one of the runs")
    config = _only(_config_without_seeds(folders[0]), methods, folders[0])
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    stages: dict[int, dict[str, list[str]]] = {}
    sources: dict[int, str] = {}
    seconds: dict[str, float] = {}
    machines: dict[str, str] = {}
    for folder in folders:
        ran = _config_without_seeds(folder)
        differing = _differing_keys(config, _only(ran, methods, folder))
        if differing:
            raise BamError(
                f"{folder}: ran another configuration than {folders[0]} ({', '.join(differing)} differ)"
            )
        origins, recorded_seconds, recorded_machines = _recorded(folder)
        for path, result in _seed_results(folder, ran, list(config["methods"])):
            seed = result["seed"]
            if seed in per_seed and per_seed[seed] != result["methods"]:
                raise BamError(f"{path}: seed {seed} is also in {sources[seed]}, with other scores")
            per_seed[seed], stages[seed] = result["methods"], result["stages"]
            sources[seed] = origins.get(str(seed), str(folder))  # a merged folder's seeds keep their source
            for stage in (Path(p) for paths in stages[seed].values() for p in paths):
                done = read_done(stage)  # a stage's own record: the run may still be training later seeds
                if done is not None:
                    seconds[stage.name], machines[stage.name] = done.get("seconds", 0.0), ran_on(done)
                    continue
                if stage.name in recorded_seconds:
                    seconds[stage.name] = recorded_seconds[stage.name]
                if stage.name in recorded_machines:
                    machines[stage.name] = recorded_machines[stage.name]
    seeds = sorted(per_seed)
    claim_run_folder(into, overwrite=False, remedy="merge into a new or empty folder")
    merged_config = {**config, "seeds": seeds}
    write_run_file(into, merged_config, merged_from={s: sources[s] for s in seeds})
    for seed in seeds:
        write_seed_results(into, seed, config, per_seed[seed], stages[seed])
    results = write_results(
        into,
        {s: per_seed[s] for s in seeds},
        {s: stages[s] for s in seeds},
        merged_config,
        stage_seconds=seconds,
        stage_machines=machines,
        merged_from={str(s): sources[s] for s in seeds},
    )
    return results
