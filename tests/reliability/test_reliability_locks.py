"""The folder lock and temporary files: two live writers exclude each other, the dead leave nothing.

The lock is filelock's OS lock (flock here): a second live process is refused with the holder's
pid; a lock file left by a ``kill -9`` is no obstacle and is gone once the next holder is done.
Temporary files carry their writer's pid, so litter of dead writers is told from the work of
live ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bam.errors import BamError
from bam.fileio import (
    LOCK_FILE,
    atomic_dir,
    atomic_write_text,
    exclusive_folder,
    remove_stale_temporaries,
)

HOLD = """
import sys, time
from bam.fileio import exclusive_folder
with exclusive_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    """A second process holding ``folder``'s lock (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_refuses_a_second_writer_by_its_pid(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(BamError) as caught, exclusive_folder(tmp_path):
            pytest.fail("the lock of a live process was taken")
        message = str(caught.value)
        assert f"in use by another bam process (pid {proc.pid}" in message and "\n" not in message
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_is_taken_and_then_removed(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(proc.pid)  # the stale file is there
    with exclusive_folder(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_lock_file_goes_also_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), exclusive_folder(tmp_path):
        raise RuntimeError("training failed")
    assert list(tmp_path.iterdir()) == []
    with exclusive_folder(tmp_path), pytest.raises(BamError, match="in use"), exclusive_folder(tmp_path):
        pass  # the same process twice: also refused (a bam run and a bam train in one process)
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(done.stdout)


def _temporary_of(pid: int, folder: Path, name: str) -> Path:
    path = folder / f".{name}.{pid}.abcd1234.tmp"
    path.write_text("half a file")
    return path


def test_temporaries_of_dead_writers_go_and_those_of_live_ones_stay(tmp_path: Path) -> None:
    dead = _dead_pid()
    gone = _temporary_of(dead, tmp_path, "report.md")
    legacy = tmp_path / ".report.md.x7f3k2.tmp"  # an older bam's name, with no pid
    legacy.write_text("half")
    proc = _holder(tmp_path / "busy")
    try:
        alive = _temporary_of(proc.pid, tmp_path, "report.md")
        other = _temporary_of(dead, tmp_path, "results.json")
        atomic_write_text(tmp_path / "report.md", "# report\n")  # the next write of the same name
        assert not gone.exists() and not legacy.exists()
        assert alive.exists() and other.exists()  # a live writer's, and another name's
        assert remove_stale_temporaries(tmp_path) == [other]
        assert alive.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_folder_swap_cut_short_leaves_nothing_after_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    target.mkdir()
    half = tmp_path / f".checkpoint.{_dead_pid()}.zz.tmp"
    half.mkdir()
    (half / "tensors.safetensors").write_bytes(b"half")
    with atomic_dir(target) as tmp:
        (tmp / "state.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert [p.name for p in target.iterdir()] == ["state.json"]
