"""Tasks as data: the GLUE table, custom-task YAML files, metrics and averages."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bam.errors import BamError
from bam.tasks.glue import GLUE_TASKS
from bam.tasks.pools import POOL_TASKS
from bam.tasks.spec import HubSource, SplitFile, TaskSpec

if TYPE_CHECKING:
    from bam.config.train import TrainConfig

__all__ = [
    "BUILTIN_TASKS",
    "GLUE_TASKS",
    "POOL_TASKS",
    "HubSource",
    "SplitFile",
    "TaskSpec",
    "check_per_task_keys",
    "check_task_keys",
    "check_task_spelling",
    "get_task",
    "task_names",
]

# Every task bam knows by name: GLUE's, then the pools of GLUE dev rows (bam.tasks.pools).
BUILTIN_TASKS: dict[str, TaskSpec] = {**GLUE_TASKS, **POOL_TASKS}

_ALIASES: dict[str, str] = {}
for _task in BUILTIN_TASKS.values():
    for _alias in (_task.name, _task.display, *_task.aliases):
        _ALIASES[_alias.lower()] = _task.name


def get_task(name_or_path: str) -> TaskSpec:
    """A built-in task by any of its names, or a custom task from a YAML file's path."""
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).suffix in {".yaml", ".yml"}:
        from bam.tasks.custom import load_custom_task

        return load_custom_task(name_or_path)
    canonical = _ALIASES.get(name_or_path.lower())
    if canonical is None:
        known = ", ".join(sorted(BUILTIN_TASKS))
        raise BamError(f"unknown task {name_or_path!r} (known: {known}, or a custom-task .yaml file)")
    return BUILTIN_TASKS[canonical]


def task_names() -> list[str]:
    return list(BUILTIN_TASKS)


def check_task_keys(setting: str, keys: Iterable[str], allowed: Collection[str]) -> None:
    """Refuse a per-task setting (``train_cap.SST-2``) keyed by a name that is not one of
    ``allowed``: settings are looked up by a task's own name, so it would be silently ignored."""
    for key in keys:
        if key in allowed:
            continue
        canonical = _ALIASES.get(str(key).lower())
        hint = f"write {canonical}" if canonical in allowed else f"tasks: {', '.join(allowed)}"
        raise BamError(f"{setting}.{key}: {key!r} is not one of the tasks here ({hint})")


def check_task_spelling(setting: str, keys: Iterable[str]) -> None:
    """Refuse a GLUE task written by another of its names (``train_cap.SST-2``), where the
    tasks a key may name are not known (a stage of ``bam run`` gets the whole run's caps)."""
    for key in keys:
        canonical = _ALIASES.get(str(key).lower())
        if canonical is not None and canonical != key:
            raise BamError(f"{setting}.{key}: settings name a task by its own name (write {canonical})")


def check_per_task_keys(
    config: TrainConfig,
    trained: Collection[str] | None = None,
    *,
    shared: Collection[str] | None = None,
    where: Callable[[str, str], str] | None = None,
) -> None:
    """The one check of a stage's per-task settings (``bam train``, ``bam run``, ``train()``): a
    key that is not a task's own name would be silently ignored, as settings are looked up by it.

    Boosts and teacher outputs must name a task ``trained`` (default: the config's own tasks).
    Caps and pair orders may name any of ``shared`` (``bam run``: a preset's caps outlive
    ``tasks=[rte]``); with ``shared`` None, any key spelled as its task's own name (a stage of
    ``bam run`` gets the whole run's caps, other stages' custom tasks included). ``where(setting,
    key)`` names the setting in a message (``bam run``: the section that holds the key)."""
    if trained is None:
        trained = [get_task(name).name for name in config.tasks]
    for setting in ("train_cap", "both_orders", "sampling_boost", "teacher_outputs"):
        allowed = trained if setting in ("sampling_boost", "teacher_outputs") else shared
        for key in getattr(config, setting):
            named = where(setting, key) if where is not None else setting
            if allowed is None:
                check_task_spelling(named, [key])
            else:
                check_task_keys(named, [key], allowed)
