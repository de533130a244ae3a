"""The one way the rest of bam gets a task split: from the vendored copy, a folder, or the hub."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from bam.data.examples import Examples
from bam.data.readers import read_split, split_path
from bam.errors import BamError
from bam.tasks.spec import TaskSpec

HUB_SOURCES = ("hub", "hf")  # the data_dir values that mean "the Hugging Face hub"


def default_data_dir() -> Path:
    """The GLUE files shipped inside bam (CoLA, SST-2, MRPC, STS-B, RTE, WNLI)."""
    return Path(str(files("bam") / "resources" / "glue"))


def is_hub(data_dir: str | Path | None) -> bool:
    return isinstance(data_dir, str) and data_dir.lower() in HUB_SOURCES


def load_examples(task: TaskSpec, split: str, data_dir: str | Path | None = None) -> Examples:
    """Read ``split`` of ``task``.

    ``data_dir`` None means the vendored copy, ``"hub"``/``"hf"`` the Hugging Face hub, anything
    else a folder in the official ``glue_data`` layout. Custom tasks name their own files, so they
    read those whatever ``data_dir`` is (a multi-task run may mix them with hub tasks).
    """
    if is_hub(data_dir) and task.hub is not None:
        from bam.data.hub import read_hub_split  # keeps `datasets` out of file-only runs

        return read_hub_split(task, split)
    if is_hub(data_dir) and task.root is None:
        raise BamError(f"task {task.name!r} has no Hugging Face hub source; give a data folder instead")
    if data_dir is None and task.root is None:
        folder = default_data_dir()
        if split in task.splits and not split_path(task, split, folder).is_file():
            raise BamError(
                f"task {task.name} ({split}) is not in bam's built-in data (it has CoLA, SST-2, MRPC, "
                "STS-B, RTE and WNLI): pass a data folder (see `bam data download`) or 'hub'"
            )
        return read_split(task, split, folder)
    return read_split(task, split, Path(data_dir) if data_dir is not None else Path("."))
