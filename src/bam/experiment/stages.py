"""Where a stage of the graph lives, ``stages/<label>-<key>``, and the teacher-output files it reads.

A stage's key covers what it reads and the model it starts from (:func:`bam.train.keys.run_keys`),
so a stage that reads or starts from others is placed only once they are trained: its ``reads``
are turned into files here (recorded first, unless only looking), its ``starts_from`` into that
stage's model folder, then its folder follows. Shared by ``bam run`` and
``--dry-run``, which must name the same folders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from bam.config.train import TrainConfig
from bam.errors import BamError
from bam.experiment.graph import Read, Reads, Stage
from bam.experiment.record import NotRecorded, cross_fitted_outputs, record_teacher_outputs
from bam.model import MODEL_DIR, MODEL_FILE
from bam.train.checkpoint import stage_folder

_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_stage_name(name: str, what: str = "stage name") -> None:
    """A name that becomes a folder: no ``/``, no ``..``, nothing that could leave the run folder."""
    if not _STAGE_NAME.fullmatch(name) or ".." in name:
        raise BamError(f"{what} {name!r}: use letters, digits, '_', '-' and '.' only (it names a folder)")


def stage_dir(root: Path, name: str, config: TrainConfig) -> Path:
    """``root/stages/<name>-<run key>``; a name that could leave ``root`` (``..``, ``/``) is refused."""
    check_stage_name(name)
    folder = stage_folder(root / "stages", name, config)
    if not folder.resolve().is_relative_to((root / "stages").resolve()):
        raise BamError(f"stage name {name!r} leads outside {root / 'stages'}")
    return folder


def _files_read(reads: Reads, folders: list[Path], config: TrainConfig, task: str, record: bool) -> list[str]:
    """The files a stage trained with ``config`` reads for ``task``: each stage's own outputs (an
    ensemble: several), or one file of outputs cross-fitted from the fold teachers."""
    if reads.how is Read.CROSS_FIT:
        return [str(cross_fitted_outputs(folders, config, task, record))]
    return [str(record_teacher_outputs(folder, config, task, record)) for folder in folders]


def place(
    stage: Stage, root: Path, folders: Mapping[str, Path], record: bool = True
) -> tuple[Path, TrainConfig]:
    """The stage's folder and the config that trains it, its teacher outputs and the model it
    starts from filled in from the ``folders`` (label -> folder) of the stages it reads or starts
    from. With ``record`` false nothing is written: outputs or a model not there yet, or a stage
    with no folder yet, are ``NotRecorded``."""
    config = stage.config
    if stage.starts_from is not None:
        if stage.starts_from not in folders:
            raise NotRecorded(f"{stage.label}: {stage.starts_from} is not placed yet")
        model = folders[stage.starts_from] / MODEL_DIR
        if not record and not (model / MODEL_FILE).is_file():
            raise NotRecorded(f"{stage.label}: {stage.starts_from} is not trained yet")
        config = replace(config, init_model=str(model))
    if stage.reads:
        spelled = dict(zip(stage.tasks, config.tasks, strict=True))  # a custom task: name -> its YAML
        outputs = {}
        for task, reads in stage.reads.items():
            missing = [label for label in reads.stages if label not in folders]
            if missing:
                raise NotRecorded(f"{stage.label}: {missing[0]} is not placed yet")
            read = [folders[label] for label in reads.stages]
            outputs[task] = _files_read(reads, read, config, spelled[task], record)
        config = replace(config, teacher_outputs=outputs)
    return stage_dir(root, stage.label, config), config
