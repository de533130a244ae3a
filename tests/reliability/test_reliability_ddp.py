"""One of two training processes dies (``kill -9``): the other stops within a minute, saying so.

Two CPU processes joined by gloo, started the two ways a run is: by ``torch.distributed.run``
(its agent stops the survivor) and by hand, with the rendezvous variables set as a cluster
scheduler sets them (the survivor's next collective fails: bam ends it with one line instead of
waiting in a teardown barrier for a peer that is gone).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import TINY

pytestmark = pytest.mark.slow

ENCODER = f"{TINY}".replace("'", "")
SURVIVOR_SECONDS = 60


def _train(out: Path) -> list[str]:
    return [
        "-m", "bam.cli", "train", "--task", "rte", "--output", str(out), "--quiet", "random_init=true",
        f"encoder_overrides={ENCODER}", "max_length=32", "batch_size=4", "train_cap.rte=400", "epochs=10",
        "checkpoint_every=2", "log_with=[]", "num_threads=1",
    ]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "BAM_CACHE": str(tmp_path / "c"),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_training(out: Path, procs: list[subprocess.Popen]) -> None:
    """Until the run has written its first checkpoint: both processes are in the step loop."""
    deadline = time.monotonic() + 240
    while not (out / "checkpoint" / "state.json").is_file():
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)


def _ends_within(proc: subprocess.Popen, seconds: float) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the surviving process still ran {seconds} s after its peer was killed")
    return proc.returncode, err, time.monotonic() - started


@pytest.mark.parametrize("victim", [1, 0], ids=["second-killed", "first-killed"])
def test_the_survivor_of_a_hand_started_pair_exits_with_one_line(tmp_path: Path, victim: int) -> None:
    out = tmp_path / "out"
    base = {**_env(tmp_path), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    base.update(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, *_train(out)],
            env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        _wait_for_training(out, procs)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        code, err, seconds = _ends_within(procs[1 - victim], SURVIVOR_SECONDS)
    finally:
        for proc in procs:
            proc.kill()
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("bam: error: another process of this distributed run stopped"), err[-2000:]
    assert "Traceback" not in err and seconds < SURVIVOR_SECONDS


def test_torchrun_stops_the_survivor_when_one_worker_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    agent = subprocess.Popen(
        [*launcher, *_train(out)],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_training(out, [agent])
        workers = [p for p in psutil.Process(agent.pid).children(recursive=True) if "bam.cli" in p.cmdline()]
        (second,) = [p for p in workers if p.environ().get("RANK") == "1"]
        second.kill()
        code, err, seconds = _ends_within(agent, SURVIVOR_SECONDS)
    finally:
        agent.kill()
    assert code != 0 and seconds < SURVIVOR_SECONDS, err[-2000:]
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
