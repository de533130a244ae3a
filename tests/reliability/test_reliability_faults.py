"""A full or failing disk at each write site: one line naming the file, the previous state intact,
and the same command succeeding once the disk is back.

Faults come in through public paths only: bam.fileio's ``BAM_FAULT_INJECT`` hook (every atomic
writer raises ``OSError(ENOSPC)`` or ``OSError(EIO)`` for a matching path, just before the rename
that would publish the file), or, for ``bam predict``'s own streaming writer, ``os.replace``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bam.cli.app import main
from tests.helpers import TINY

pytestmark = pytest.mark.slow

ENCODER = f"{TINY}".replace("'", "")
RUN = [
    "tasks=[rte]",
    "train={random_init: true, max_length: 32, num_threads: 1, log_with: [],"
    f" encoder_overrides: {ENCODER}}}",
    "student.batch_size=8",
]
REASON = {"ENOSPC": "No space left on device", "EIO": "Input/output error"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = str(tmp_path_factory.mktemp("cache"))
    return {**os.environ, "BAM_CACHE": cache, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def _bam(argv: list[str], env: dict[str, str], fault: str | None = None) -> subprocess.CompletedProcess:
    extra = {"BAM_FAULT_INJECT": fault} if fault else {}
    return subprocess.run(
        [sys.executable, "-m", "bam.cli", *argv, "-q"], env={**env, **extra}, capture_output=True, text=True
    )


def _refused(done: subprocess.CompletedProcess, path: Path, what: str) -> None:
    """Status 2 and one ``bam: error:`` line naming ``path`` and the disk's complaint, no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and done.stderr.count("bam: error:") == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # a busy machine's warning may come first
    assert last.startswith("bam: error: ") and str(path) in last and REASON[what] in last, last


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    root = tmp_path_factory.mktemp("finished") / "run"
    done = _bam(["run", "--preset", "smoke", "--output", str(root), *RUN], env)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _copy(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run whose stages are those of the original (links: no retraining)."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("stages"))
    (run / "stages").symlink_to(finished_run / "stages")
    return run


@pytest.mark.parametrize("what", ["ENOSPC", "EIO"])
@pytest.mark.parametrize("name", ["results.json", "report.md"])
def test_a_run_folder_file_that_cannot_be_written_leaves_the_old_one(
    tmp_path: Path, env: dict[str, str], finished_run: Path, name: str, what: str
) -> None:
    run = _copy(finished_run, tmp_path)
    before = (run / name).read_bytes()
    argv = ["run", "--preset", "smoke", "--output", str(run), *RUN]
    _refused(_bam(argv, env, f"{what}:{run / name}"), run / name, what)
    assert (run / name).read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    again = _bam(argv, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        json.loads((run / "results.json").read_text())["methods"]
        == json.loads((finished_run / "results.json").read_text())["methods"]
    )


def test_teacher_outputs_that_cannot_be_written_are_written_on_the_next_run(
    tmp_path: Path, env: dict[str, str], finished_run: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)  # a real copy: its teacher stage is written in
    (outputs,) = run.glob("stages/teacher-*/outputs-*.safetensors")
    outputs.unlink()
    argv = ["run", "--preset", "smoke", "--output", str(run), *RUN]
    _refused(_bam(argv, env, "ENOSPC:*/outputs-*.safetensors"), outputs, "ENOSPC")
    assert not outputs.exists() and not list(outputs.parent.glob(".*"))
    again = _bam(argv, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert outputs.is_file()
    assert (
        json.loads((run / "results.json").read_text())["methods"]
        == json.loads((finished_run / "results.json").read_text())["methods"]
    )


TRAIN = [
    "random_init=true", f"encoder_overrides={ENCODER}", "max_length=32", "num_threads=1",
    "train_cap={rte: 24}", "batch_size=4", "epochs=2", "checkpoint_every=2", "log_with=[]",
]  # fmt: skip


def test_a_checkpoint_that_cannot_be_written_leaves_the_last_one_to_resume_from(
    tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    argv = ["train", "--task", "rte", "--output", str(out), *TRAIN]
    killed = _bam(argv, env, "KILL_AFTER:*/checkpoint")  # a first checkpoint, at step 2
    assert killed.returncode < 0
    state = out / "checkpoint" / "state.json"
    before = state.read_bytes()
    assert json.loads(before)["progress"]["step"] == 2
    _refused(_bam(argv, env, "ENOSPC:*/checkpoint"), out / "checkpoint", "ENOSPC")
    assert state.read_bytes() == before  # the step-2 checkpoint, whole
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    done = _bam(argv, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "train_done.json").is_file() and not (out / "checkpoint").exists()


def _stage_model(finished_run: Path) -> Path:
    return next(finished_run.glob("stages/teacher-*")) / "model"


def _main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*argv, "-q"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("what", ["ENOSPC", "EIO"])
def test_an_export_that_cannot_be_written_leaves_no_folder(
    tmp_path: Path,
    finished_run: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    out = tmp_path / "exported"
    argv = ["export", "--model", str(_stage_model(finished_run)), "--task", "rte", "--out", str(out)]
    monkeypatch.setenv("BAM_FAULT_INJECT", f"{what}:{out}")
    code, err = _main(argv, capsys)
    assert code == 2 and err.startswith(f"bam: error: {out}") and REASON[what] in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("BAM_FAULT_INJECT")
    assert _main(argv, capsys)[0] == 0 and any(out.iterdir())


@pytest.mark.parametrize("what", ["ENOSPC", "EIO"])
def test_predictions_that_cannot_be_written_leave_the_previous_file(
    tmp_path: Path,
    finished_run: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    rows = tmp_path / "in.tsv"
    rows.write_text("sentence1\tsentence2\nA man sleeps.\tA person rests.\nThe cat sat.\tNo cat.\n")
    out = tmp_path / "predictions.jsonl"
    out.write_text('{"earlier": "predictions"}\n')
    argv = ["predict", "--model", str(_stage_model(finished_run)), "--task", "rte", "--input", str(rows)]
    argv += ["--output", str(out)]
    replace = os.replace

    def full_disk(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        if Path(dst) == out:
            raise OSError(getattr(errno, what), os.strerror(getattr(errno, what)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    code, err = _main(argv, capsys)
    assert code == 2 and err.startswith(f"bam: error: {out}") and REASON[what] in err and err.count("\n") == 1
    assert out.read_text() == '{"earlier": "predictions"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tsv", "predictions.jsonl"]
    monkeypatch.setattr(os, "replace", replace)
    assert _main(argv, capsys)[0] == 0
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()][:1] != []
