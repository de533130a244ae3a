"""Progress bars: redrawn live on a terminal, once a minute into a log file."""

from __future__ import annotations

import io

import pytest
from tqdm.auto import tqdm

from bam.progress import LOG_INTERVAL, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _draws(monkeypatch, bar_factory, steps: int = 600) -> int:
    """How often a bar of ``steps`` steps, one second apart on a fake clock, draws itself."""
    clock = iter(range(10**6))
    monkeypatch.setattr("tqdm.std.time", lambda: float(next(clock)))
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    bar = bar_factory(total=steps, desc="train")
    for _ in range(steps):
        bar.update(1)
    bar.close()
    return log.getvalue().count("\r")


def test_a_log_file_gets_a_redraw_a_minute_not_one_per_step(monkeypatch) -> None:
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_bar(total=1).mininterval == LOG_INTERVAL
    # Ten minutes of one step a second: about ten redraws, where plain tqdm draws every step.
    assert _draws(monkeypatch, progress_bar) <= 15
    assert _draws(monkeypatch, tqdm) >= 500


def test_a_terminal_keeps_tqdms_live_bar(monkeypatch) -> None:
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_bar(total=1).mininterval == pytest.approx(0.1)


def test_the_users_tqdm_mininterval_is_left_to_tqdm(monkeypatch) -> None:
    monkeypatch.setenv("TQDM_MININTERVAL", "5")  # tqdm reads it when imported, not here
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_bar(total=1).mininterval != LOG_INTERVAL
