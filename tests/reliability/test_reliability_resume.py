"""``kill -9`` at any moment, then the same command again: the results are those of an unbroken run.

Real ``bam`` processes are killed with SIGKILL at several points (right after a checkpoint is
committed, in the middle of writing one, in the middle of a ``bam run`` stage); the rerun must
finish with bit-identical weights, dev scores and loss history to an uninterrupted run with the
same seed. That is a CPU guarantee (CUDA's atomic adds differ in the last bits from run to run),
so every run here is a process with the GPU hidden. Tiny random model, a few dozen rows, so that
the whole file takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import TINY as TINY_ENCODER

pytestmark = pytest.mark.slow

ENCODER = f"{TINY_ENCODER}".replace("'", "")  # {num_hidden_layers: 2, ...} as YAML
TINY = [
    "random_init=true",
    f"encoder_overrides={ENCODER}",
    "max_length=32",
    "num_threads=1",
]
# 48 rows, batch 4: 12 steps an epoch, 4 epochs; a checkpoint every 3 steps and at epoch ends.
TRAIN = [
    *TINY,
    "train_cap={rte: 48}",
    "batch_size=4",
    "epochs=4",
    "checkpoint_every=3",
    "learning_rate=1e-3",
    "log_with=[]",
]
TOTAL_STEPS = 48


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("BAM_CACHE", str(tmp_path / "cache"))
    hidden_gpu = {"CUDA_VISIBLE_DEVICES": ""}
    return {**os.environ, "BAM_CACHE": str(tmp_path / "cache"), "PYTHONHASHSEED": "0", **hidden_gpu}


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bam.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _kill_when(proc: subprocess.Popen, condition: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``condition()`` holds; fail if it ended or hung before that."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc={proc.returncode}) before the kill point: {proc.stderr.read()!r}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("kill point never reached")
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _finish(argv: list[str], env: dict[str, str]) -> None:
    proc = _start(argv, env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def _step(checkpoint: Path) -> int:
    """The step of the committed checkpoint (0 when there is none or it is being swapped)."""
    try:
        return json.loads((checkpoint / "state.json").read_text())["progress"]["step"]
    except (OSError, ValueError):
        return 0


def _committed(out: Path) -> int:
    """The step a resumed run will start from: a kill may catch the checkpoint folder mid-swap."""
    folders = [out / "checkpoint", *(old / "previous" for old in out.glob(".checkpoint.*.old"))]
    return max(_step(folder) for folder in folders)


def _writing(folder: Path) -> bool:
    """A checkpoint or model folder is being written (its temporary folder exists)."""
    return any(p.name.endswith(".tmp") for p in folder.iterdir()) if folder.is_dir() else False


def _same_run(a: Path, b: Path) -> None:
    model = Path("model") / "model.safetensors"
    assert (a / model).read_bytes() == (b / model).read_bytes()
    done_a, done_b = (json.loads((x / "train_done.json").read_text()) for x in (a, b))
    for key in ("run_key", "dev", "history", "total_steps", "model_sha256"):
        assert done_a[key] == done_b[key], key
    assert not (b / "checkpoint").exists()


@pytest.mark.parametrize("extra", [[], ["ema_decay=0.9"]], ids=["weights", "weight-average"])
def test_bam_train_killed_twice_resumes_to_identical_results(
    tmp_path: Path, env: dict[str, str], extra: list[str]
) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    _finish(["train", "--task", "rte", "--output", str(ref), "-q", *TRAIN, *extra], env)
    argv = ["train", "--task", "rte", "--output", str(out), "-q", *TRAIN, *extra]
    checkpoint = out / "checkpoint"

    # 1. Killed right after the first checkpoint is committed (it has run on a few steps since).
    _kill_when(_start(argv, env), lambda: _step(checkpoint) > 0)
    first = _committed(out)
    assert 0 < first < TOTAL_STEPS and not (out / "train_done.json").exists()

    # 2. Resumed, then killed while it writes a later checkpoint or model (or, failing that, late on).
    later = first + 6
    _kill_when(
        _start(argv, env),
        lambda: (_step(checkpoint) >= later and _writing(out)) or _step(checkpoint) >= TOTAL_STEPS - 6,
    )
    assert _committed(out) >= later and not (out / "train_done.json").exists()

    # 3. Runs to the end: the same weights, dev scores and loss history as the unbroken run.
    _finish(argv, env)
    _same_run(ref, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    # 4. Again on the finished folder: nothing is trained, the stored result is reported.
    before = (out / "train_done.json").stat().st_mtime_ns
    _finish(argv, env)
    assert (out / "train_done.json").stat().st_mtime_ns == before


# Two tasks of 24 rows (the same 48 steps); the shares re-measured every 5 steps, so that a kill
# falls between two updates (the shares restored) and on an update step (re-measured on resume).
ADAPTIVE = ["sampling=adaptive", "sampling_update_every=5", "sampling_slice=16"]
ADAPTIVE += ["train_cap={rte: 24, stsb: 24}"]


def test_an_adaptive_sampler_resumes_to_the_unbroken_runs_shares_and_weights(
    tmp_path: Path, env: dict[str, str]
) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    tasks = ["--task", "rte", "--task", "stsb"]
    _finish(["train", *tasks, "--output", str(ref), "-q", *TRAIN, *ADAPTIVE], env)
    argv = ["train", *tasks, "--output", str(out), "-q", *TRAIN, *ADAPTIVE]
    checkpoint = out / "checkpoint"
    _kill_when(_start(argv, env), lambda: _step(checkpoint) >= 7)  # past the update at step 5
    _kill_when(_start(argv, env), lambda: _step(checkpoint) >= 15)  # 15: an update step, and later
    assert 15 <= _committed(out) < TOTAL_STEPS
    _finish(argv, env)
    _same_run(ref, out)
    done_ref, done = (json.loads((x / "train_done.json").read_text()) for x in (ref, out))
    shares = done["shares_over_training"]
    assert shares == done_ref["shares_over_training"]
    assert [u["step"] for u in shares] == list(range(0, TOTAL_STEPS, 5))


RUN = [
    "tasks=[rte]",
    "train={random_init: true, max_length: 32, num_threads: 1, checkpoint_every: 2, log_with: [],"
    f" encoder_overrides: {ENCODER}}}",
    "student.batch_size=4",
]


def _listing(root: Path) -> list[str]:
    """Every file and folder under ``root``, relative to it (stage folders are named by their key)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _leftovers(root: Path) -> list[str]:
    """What a finished run folder must not hold: locks, temporary files, checkpoints."""
    return [
        name
        for name in _listing(root)
        if any(part.startswith(".") or part == "checkpoint" for part in Path(name).parts)
    ]


def _same_results(ref: Path, out: Path) -> None:
    """The resumed run has the unbroken run's scores, stages, weights and files, and nothing more."""
    results_ref, results = (json.loads((x / "results.json").read_text()) for x in (ref, out))
    assert results["methods"] == results_ref["methods"]
    stages_ref, stages = results_ref["details"]["stages"]["13"], results["details"]["stages"]["13"]
    assert [Path(p).name for ps in stages.values() for p in ps] == [
        Path(p).name for ps in stages_ref.values() for p in ps
    ]
    for method in ("single", "multi", "bam"):
        for a, b in zip(stages_ref[method], stages[method], strict=True):
            _same_run(Path(a), Path(b))
    assert _leftovers(out) == []
    assert _listing(out) == _listing(ref)


@pytest.fixture(scope="module")
def run_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tokenization cache for the module's runs (it lives outside the run folders)."""
    cache = str(tmp_path_factory.mktemp("cache"))
    return {**os.environ, "BAM_CACHE": cache, "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, run_env: dict[str, str]) -> Path:
    """An unbroken ``bam run --preset smoke`` (one task), as every resumed run must end."""
    ref = tmp_path_factory.mktemp("reference") / "run"
    _finish(["run", "--preset", "smoke", "--output", str(ref), "-q", *RUN], run_env)
    assert _leftovers(ref) == []
    return ref


def test_bam_run_killed_mid_stage_resumes_to_identical_results(
    tmp_path: Path, run_env: dict[str, str], reference_run: Path
) -> None:
    out = tmp_path / "out"
    argv = ["run", "--preset", "smoke", "--output", str(out), "-q", *RUN]

    def bam_stage_checkpointed() -> bool:
        return any(_step(p / "checkpoint") > 0 for p in (out / "stages").glob("bam-all-*"))

    _kill_when(_start(argv, run_env), bam_stage_checkpointed)
    assert not (out / "results.json").exists()
    _finish(argv, run_env)
    _same_results(reference_run, out)


# Where the process kills itself (bam.fileio's BAM_FAULT_INJECT hook: KILL just before an atomic
# write's rename, KILL_AFTER just after it), and the litter that kill leaves for the resume.
KILL_POINTS = {
    "teacher-checkpoint-half-written": (
        "KILL:*/stages/teacher-*/checkpoint",
        "stages/teacher-*/.checkpoint.*.tmp",
    ),
    "teacher-recorded-not-tidied": (
        "KILL_AFTER:*/stages/teacher-*/train_done.json",
        "stages/teacher-*/checkpoint",
    ),
    "teacher-outputs-half-written": (
        "KILL:*/stages/teacher-*/outputs-*.safetensors",
        "stages/teacher-*/.outputs-*.tmp",
    ),
    "student-model-half-written": ("KILL:*/stages/bam-all-*/model", "stages/bam-all-*/.model.*.tmp"),
    "student-checkpoint-just-committed": (
        "KILL_AFTER:*/stages/bam-all-*/checkpoint",
        "stages/bam-all-*/.lock",
    ),
    "multi-recorded-not-tidied": (
        "KILL_AFTER:*/stages/multi-all-*/train_done.json",
        "stages/multi-all-*/.lock",
    ),
    "seed-results-half-written": ("KILL:*/seeds/13/results.json", "seeds/13/.results.json.*.tmp"),
    "report-half-written": ("KILL:*/out/report.md", ".report.md.*.tmp"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_bam_run_killed_at_each_write_resumes_and_leaves_nothing_behind(
    tmp_path: Path, run_env: dict[str, str], reference_run: Path, point: str
) -> None:
    """``kill -9`` at a write of each kind, then the same command: the unbroken run's results and
    files, and not one leftover (no lock, temporary file or checkpoint)."""
    hook, litter = KILL_POINTS[point]
    out = tmp_path / "out"
    argv = ["run", "--preset", "smoke", "--output", str(out), "-q", *RUN]
    killed = subprocess.run(
        [sys.executable, "-m", "bam.cli", *argv],
        env={**run_env, "BAM_FAULT_INJECT": hook},
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert list(out.glob(litter)), f"the kill left no {litter}: {_listing(out)}"
    _finish(argv, run_env)
    _same_results(reference_run, out)
