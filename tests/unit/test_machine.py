"""The busy-CPU warning: a run beside another job says so before it starts, and only then."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bam.cpu import machine


@pytest.fixture
def two_cores(monkeypatch) -> None:
    monkeypatch.setattr(machine.psutil, "cpu_count", lambda: 2)
    monkeypatch.setattr(machine.torch.cuda, "is_available", lambda: False)


def _readings(monkeypatch, *readings: tuple[float, float]) -> None:
    """The CPU counters as they would read at each call: (busy, total) CPU seconds since boot."""
    queue = list(readings)
    monkeypatch.setattr(machine, "cpu_seconds", lambda: queue.pop(0))


@pytest.mark.parametrize(
    ("later", "warned"),
    [((101.8, 202.0), "using 1.8 of this machine's 2 cores"), ((100.2, 202.0), None)],
)
def test_other_processes_on_the_cores_are_reported(two_cores, monkeypatch, caplog, later, warned) -> None:
    _readings(monkeypatch, (100.0, 200.0), later)
    with caplog.at_level(logging.WARNING, logger="bam"):
        machine.warn_if_cpus_busy(seconds=0)
    if warned:
        assert warned in caplog.text and "slower" in caplog.text
    else:
        assert caplog.text == ""


def test_a_machine_without_proc_stat_is_not_reported_busy(two_cores, monkeypatch, caplog) -> None:
    _readings(monkeypatch, (0.0, 0.0), (0.0, 0.0))
    with caplog.at_level(logging.WARNING, logger="bam"):
        machine.warn_if_cpus_busy(seconds=0)
    assert caplog.text == ""


def test_the_counters_are_read_as_growing_busy_and_total_seconds() -> None:
    busy0, total0 = machine.cpu_seconds()
    sum(i * i for i in range(2_000_000))  # some work, so that the counters move
    busy1, total1 = machine.cpu_seconds()
    assert 0 < busy0 <= total0 and busy1 > busy0 and total1 > total0
    assert 0.0 <= machine.busy_share(0.05) <= 1.0


def test_counters_that_cannot_be_read_are_not_a_busy_machine(monkeypatch) -> None:
    def unreadable():
        raise machine.psutil.AccessDenied()

    monkeypatch.setattr(machine.psutil, "cpu_times", unreadable)
    assert machine.cpu_seconds() == (0.0, 0.0) and machine.busy_share(0) == 0.0


def test_the_cpu_name_comes_from_cpuinfo_or_platform(monkeypatch) -> None:
    assert machine.cpu_name()  # Linux: /proc/cpuinfo's model name; elsewhere platform's
    monkeypatch.setattr(machine, "Path", lambda _: Path("/nonexistent/cpuinfo"))
    monkeypatch.setattr(machine.platform, "processor", lambda: "Some Arm")
    assert machine.cpu_name() == "Some Arm"


def test_the_hardware_record_names_the_vector_unit_and_threads(monkeypatch) -> None:
    monkeypatch.setattr(machine, "cpu_name", lambda: "Some CPU")
    monkeypatch.setattr(machine.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(machine.torch, "get_num_threads", lambda: 1)
    assert machine.hardware(machine.torch.device("cpu"), 1).startswith(
        "1 × Some CPU (AVX2, 1 thread); torch "
    )
    monkeypatch.setattr(machine.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(machine.torch, "get_num_threads", lambda: 2)
    assert machine.hardware(machine.torch.device("cpu"), 2).startswith(
        "2 × Some CPU (AVX512, 2 threads); torch "
    )
