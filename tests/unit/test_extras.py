"""The optional extras: without matplotlib, TensorBoard or datasets, the core install still trains,
evaluates and reports, and whatever needs a missing extra says which one in one line."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from bam.cli.app import main
from bam.extras import MissingExtra, check_trackers, install_hint, require
from tests.helpers import TINY


def _block(monkeypatch, *modules: str) -> None:
    """Make ``import module`` fail, as on a machine without it."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _results() -> dict:
    scores = {"single": {"rte": 60.0, "avg": 60.0}, "bam": {"rte": 62.0, "avg": 62.0}}
    config = {
        "tasks": ["rte"],
        "seeds": [13],
        "methods": {"single": {}, "bam": {"lambda_schedule": "linear"}},
    }
    details = {"seeds": [13], "per_seed": {"13": scores}, "stage_seconds": {"teacher rte s13": 9.0}}
    return {"methods": scores, "details": {**details, "config": config}}


@pytest.mark.parametrize(
    ("extra", "module", "message"),
    [
        ("plots", "matplotlib", "plots need matplotlib: pip install 'bam-nlu[plots]'"),
        ("hub", "datasets", "hub data (data_dir: hub) needs datasets: pip install 'bam-nlu[hub]'"),
        (
            "tensorboard",
            "tensorboard",
            "log_with: tensorboard needs tensorboard: pip install 'bam-nlu[tensorboard]'",
        ),
    ],
)
def test_a_missing_extra_is_named_with_its_pip_command(monkeypatch, extra, module, message) -> None:
    assert install_hint(extra) == message
    pytest.importorskip(module)  # installed here (the dev extra): require gives it back
    assert require(extra).__name__ == module
    _block(monkeypatch, module)
    with pytest.raises(MissingExtra) as err:
        require(extra)
    assert str(err.value) == message


@pytest.mark.parametrize("blocked", [False, True])
def test_a_report_without_matplotlib_is_written_without_plots_and_says_why(
    tmp_path, monkeypatch, caplog, capsys, blocked
) -> None:
    pytest.importorskip("matplotlib")
    if blocked:
        _block(monkeypatch, "matplotlib", "matplotlib.pyplot")
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    with caplog.at_level(logging.WARNING, logger="bam"):
        assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    why = f"No plots: plots need matplotlib: pip install 'bam-nlu[plots]', then `bam report {tmp_path}`."
    if blocked:
        assert pngs == [] and why in report and "![" not in report
        assert "written without plots (plots need matplotlib" in caplog.text
    else:
        assert "plot_scores.png" in pngs and "![plot_scores](plot_scores.png)" in report
        assert "No plots" not in report and "without plots" not in caplog.text


def test_tensorboard_logging_without_tensorboard_is_refused_before_training(
    tmp_path, monkeypatch, capsys
) -> None:
    """accelerate skips a tracker whose package is missing with a debug line: a run asked for
    TensorBoard logs would end with none, and nothing said."""
    check_trackers([])  # the default: nothing to log, nothing needed
    _block(monkeypatch, "tensorboard", "tensorboardX")
    with pytest.raises(MissingExtra, match=r"pip install 'bam-nlu\[tensorboard\]'"):
        check_trackers(["tensorboard"])
    out = tmp_path / "run"
    tiny = json.dumps(TINY).replace('"', "")
    argv = ["train", "--task", "rte", "--output", str(out), "random_init=true", f"encoder_overrides={tiny}"]
    assert main([*argv, "train_cap={rte: 8}", "epochs=1", "log_with=[tensorboard]"]) == 2
    err = capsys.readouterr().err
    assert err == "bam: error: log_with: tensorboard needs tensorboard: pip install 'bam-nlu[tensorboard]'\n"
    assert not (out / "model").exists()


def test_hub_data_without_datasets_is_one_line(monkeypatch) -> None:
    from bam.data.hub import read_hub_split
    from bam.tasks import get_task

    _block(monkeypatch, "datasets")
    with pytest.raises(
        MissingExtra, match=r"^hub data \(data_dir: hub\) needs datasets: pip install 'bam-nlu\[hub\]'$"
    ):
        read_hub_split(get_task("rte"), "dev")
