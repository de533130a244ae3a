"""The core install (no extra) trains, evaluates and predicts: ``bam run``, ``bam evaluate`` and
``bam predict`` in a process that sees neither matplotlib, TensorBoard nor datasets (nor pandas and
pyarrow, which come with datasets), as on a machine that installed ``pip install bam-nlu``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# sys.path as if the extras were not installed: no module to import and no metadata, so the
# availability checks of transformers and accelerate answer as they would there.
HIDE_EXTRAS = """
import importlib.machinery, sys
from importlib.metadata import DistributionFinder
HIDDEN = {"matplotlib", "tensorboard", "tensorboardX", "datasets", "pandas", "pyarrow"}

class WithoutExtras(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else super().find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, context=None, **kwargs):
        found = super().find_distributions(context or DistributionFinder.Context(**kwargs))
        return (d for d in found if d.metadata["Name"] not in HIDDEN)

sys.meta_path[:] = [WithoutExtras if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


@pytest.mark.slow
def test_the_core_install_trains_evaluates_predicts_and_reports_without_plots(tmp_path) -> None:
    run, rows = tmp_path / "smoke", tmp_path / "rows.tsv"
    rows.write_text("sentence1\tsentence2\nA man sleeps.\tA man is awake.\n")
    script = HIDE_EXTRAS + textwrap.dedent(
        f"""
        from pathlib import Path
        from bam.cli.app import main
        run = Path({str(run)!r})
        codes = [main(["run", "--preset", "smoke", "--output", str(run), "--quiet"])]
        student = next(p for p in (run / "stages").iterdir() if p.name.startswith("bam-"))
        codes.append(main(["evaluate", "--model", str(student), "--output", str(run / "eval.json")]))
        codes.append(main(["predict", "--model", str(student), "--task", "rte", "--input", {str(rows)!r},
                           "--output", str(run / "predictions.jsonl"), "--quiet"]))
        print(codes, sorted(HIDDEN & {{name.split(".")[0] for name in sys.modules}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.stdout.splitlines()[-1:] == ["[0, 0, 0] []"], done.stderr[-3000:]
    report = (run / "report.md").read_text()
    assert "No plots: plots need matplotlib: pip install 'bam-nlu[plots]'" in report
    assert not list(run.glob("*.png")) and "| method |" in report
    assert "written without plots (plots need matplotlib" in done.stderr
    assert "rte" in json.loads((run / "eval.json").read_text())["metrics"]
    prediction = json.loads((run / "predictions.jsonl").read_text())
    assert prediction["label"] in ("entailment", "not_entailment")
