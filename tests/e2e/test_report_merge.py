"""`bam report --merge-into`: seeds run in separate folders give one report, and mismatches are refused."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from bam.cli.app import main

pytestmark = pytest.mark.slow


def _run(out: Path, seed: int) -> None:
    args = ["run", "--preset", "smoke", "--output", str(out), "--quiet", "tasks=[rte]", f"seeds=[{seed}]"]
    assert main(args) == 0


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_seeds_run_apart_merge_into_one_report(tmp_path, capsys) -> None:
    first, second, merged = tmp_path / "first", tmp_path / "second", tmp_path / "merged"
    _run(first, 1)
    _run(second, 2)
    assert main(["report", str(first), str(second), "--merge-into", str(merged)]) == 0
    assert "seeds [1, 2]" in capsys.readouterr().out

    results = json.loads((merged / "results.json").read_text())
    seeds = {
        seed: json.loads((folder / "seeds" / str(seed) / "results.json").read_text())
        for seed, folder in ((1, first), (2, second))
    }
    assert results["details"]["seeds"] == [1, 2]
    for method, scores in results["methods"].items():
        for key, value in scores.items():
            assert value == pytest.approx(statistics.median(seeds[s]["methods"][method][key] for s in (1, 2)))
    assert results["details"]["per_seed"]["2"] == seeds[2]["methods"]
    assert results["details"]["config"]["seeds"] == [1, 2]
    # Stage paths point at the folders that hold them, and their recorded times came along.
    for seed, folder in ((1, first), (2, second)):
        for paths in results["details"]["stages"][str(seed)].values():
            assert all(Path(p).is_dir() and Path(p).parent == (folder / "stages").resolve() for p in paths)
    assert len(results["details"]["stage_seconds"]) == 6  # a teacher, Multi and BAM per seed
    # Each stage says which precision it trained in, why, and on what (seeds may run on other machines).
    machines = results["details"]["stage_machines"]
    assert machines.keys() == results["details"]["stage_seconds"].keys()
    assert all(" (auto: " in line and " on 1 × " in line for line in machines.values())
    report = (merged / "report.md").read_text()
    assert "Median over seeds 1, 2" in report and f"seed 2: `{second}`" in report
    assert f"- seed 2 (3 stages): {machines[next(iter(machines))]}" in report
    assert (merged / "plot_scores.png").is_file()
    assert json.loads((merged / "seeds" / "1" / "results.json").read_text())["methods"] == seeds[1]["methods"]

    # The same seed twice with the same scores is one seed; with other scores it is refused.
    twin = tmp_path / "twin"
    shutil.copytree(first, twin)
    again = tmp_path / "again"
    assert main(["report", str(first), str(twin), "--merge-into", str(again)]) == 0
    assert json.loads((again / "results.json").read_text())["details"]["seeds"] == [1]
    _edit_json(twin / "seeds" / "1" / "results.json", lambda d: d["methods"]["bam"].update(rte=0.0))
    assert main(["report", str(first), str(twin), "--merge-into", str(tmp_path / "x")]) != 0
    assert "seed 1 is also in" in capsys.readouterr().err

    # A seed file left by an earlier configuration of its folder is refused, naming what differs;
    # a file from before seed files kept their configuration is checked by its key.
    twin_seed = twin / "seeds" / "1" / "results.json"
    _edit_json(twin_seed, lambda d: d["config"]["student"].update(epochs=9))
    assert main(["report", str(twin), "--merge-into", str(tmp_path / "z")]) != 0
    err = capsys.readouterr().err
    assert "earlier configuration" in err and "(student differ)" in err
    _edit_json(twin_seed, lambda d: [d.pop("config"), d.update(config_key="0" * 16)])
    assert main(["report", str(twin), "--merge-into", str(tmp_path / "z")]) != 0
    assert "earlier configuration" in capsys.readouterr().err

    # A run that goes on to add a method to its folder rewrites bam_run.json: its finished seeds
    # still merge on the methods they ran, and the new method is named where a seed lacks it.
    grown = tmp_path / "grown"
    shutil.copytree(first, grown)
    _edit_json(grown / "bam_run.json", lambda d: d["config"]["methods"].update(bam_t2={"temperature": 2.0}))
    args = ["report", str(grown), "--merge-into", str(tmp_path / "g"), "--methods", "single,multi,bam", "-q"]
    assert main(args) == 0
    assert json.loads((tmp_path / "g" / "results.json").read_text())["details"]["seeds"] == [1]
    assert main(["report", str(grown), "--merge-into", str(tmp_path / "v")]) != 0
    assert "has no method bam_t2" in capsys.readouterr().err

    # --methods merges on the methods the runs share: here one run lacks Multi.
    _edit_json(second / "bam_run.json", lambda d: d["config"]["methods"].pop("multi"))
    seed_two = second / "seeds" / "2" / "results.json"
    _edit_json(seed_two, lambda d: [d["methods"].pop("multi"), d.pop("config_key"), d.pop("config")])  # old
    assert main(["report", str(first), str(second), "--merge-into", str(tmp_path / "w")]) != 0
    assert "methods differ" in capsys.readouterr().err
    some = tmp_path / "some"
    args = ["report", str(first), str(second), "--merge-into", str(some), "--methods", "single,bam"]
    assert main(args) == 0
    assert set(json.loads((some / "results.json").read_text())["methods"]) == {"single", "bam"}
    assert main(["report", str(second), "--merge-into", str(tmp_path / "v"), "--methods", "multi"]) != 0
    assert "has no method multi" in capsys.readouterr().err
    assert main(["report", str(first), "--methods", "bam"]) != 0

    # Another configuration (here a student setting) cannot be merged, and the key is named.
    _edit_json(second / "bam_run.json", lambda d: d["config"]["student"].update(epochs=9))
    assert main(["report", str(first), str(second), "--merge-into", str(tmp_path / "y")]) != 0
    err = capsys.readouterr().err
    assert "ran another configuration" in err and "student" in err
    assert not any((tmp_path / name).exists() for name in "vwxyz")

    # Writing the merge into one of its sources is refused.
    assert main(["report", str(first), str(twin), "--merge-into", str(first)]) != 0
    assert "new folder" in capsys.readouterr().err

    # A folder of something else is refused, with advice `bam report` can take (it has no --overwrite).
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["report", str(first), "--merge-into", str(foreign)]) != 0
    err = capsys.readouterr().err
    assert "merge into a new or empty folder" in err and "--overwrite" not in err


def test_a_merged_folder_merges_again_without_its_stage_folders(tmp_path) -> None:
    """Stages trained on a lent machine stay there: the merge's wall-time table lost them, and a
    merge of merged folders named the merged folder as every seed's source."""
    first, second, merged = tmp_path / "first", tmp_path / "second", tmp_path / "merged"
    _run(first, 1)
    _run(second, 2)
    assert main(["report", str(first), str(second), "--merge-into", str(merged), "-q"]) == 0
    for folder in (first, second):
        shutil.rmtree(folder / "stages")
    again = tmp_path / "again"
    assert main(["report", str(merged), "--merge-into", str(again), "-q"]) == 0
    before, after = (json.loads((f / "results.json").read_text())["details"] for f in (merged, again))
    assert len(after["stage_seconds"]) == 6 and after["stage_seconds"] == before["stage_seconds"]
    assert len(after["stage_machines"]) == 6 and after["stage_machines"] == before["stage_machines"]
    assert after["merged_from"] == {"1": str(first), "2": str(second)}
    # a report written again from results.json reads as the one the merge wrote
    report = (again / "report.md").read_text()
    assert main(["report", str(again), "-q"]) == 0
    assert (again / "report.md").read_text() == report
