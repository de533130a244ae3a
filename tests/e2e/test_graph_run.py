"""`bam run --dry-run` describes the very stages `bam run` trains: both walk one stage graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bam.cli.app import main

pytestmark = pytest.mark.slow


def _section(lines: list[str], title: str) -> list[str]:
    """The indented lines under ``title`` in a printed plan, up to the next blank line."""
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_the_dry_run_lists_the_stages_the_smoke_run_trains(tmp_path: Path, capsys) -> None:
    out = tmp_path / "smoke"
    argv = ["run", "--preset", "smoke", "--output", str(out), "--quiet", "train.num_threads=1"]
    assert main([*argv, "--dry-run"]) == 0
    before = capsys.readouterr().out.splitlines()
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    after = capsys.readouterr().out.splitlines()

    results = json.loads((out / "results.json").read_text())
    trained = [Path(f).name for folders in results["details"]["stages"]["13"].values() for f in folders]
    assert len(trained) == 4 and sorted(trained) == sorted(results["details"]["stages_trained"])
    listed = [line.split()[0] for line in _section(after, "  seed 13")]
    assert sorted(listed) == sorted(trained)  # same folders: same labels and keys
    assert f"progress in {out}: 4 of 4 stages trained" in after
    # The plan printed before the run named the same stages, by title, in training order.
    titles = [line.split("rows")[0].strip() for line in _section(before, "stages per seed:")]
    assert titles == ["teacher rte s13", "teacher stsb s13", "multi rte+stsb", "bam rte+stsb"]
    labels = [name.rsplit("-", 1)[0] for name in listed]
    assert labels == ["teacher-rte-s13", "teacher-stsb-s13", "multi-all-s13", "bam-all-s13"]
