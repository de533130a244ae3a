"""Security: nothing pickled is loaded, hub code needs an explicit flag, names stay in their folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bam.cli.app import build_parser
from bam.config.run import load_run_config
from bam.config.train import TrainConfig, build_dataclass
from bam.errors import BamError
from bam.experiment.run import run, stage_dir
from tests import helpers
from tests.helpers import TINY

SRC = helpers.SRC
FORBIDDEN = (
    r"trust_remote_code\s*=\s*True",
    r"allow_pickle\s*=\s*True",
    r"weights_only\s*=\s*False",
    r"\byaml\.(unsafe_)?load\(",  # not bam.safeyaml.load
    r"\byaml\.full_load",
    r"\bUnpickler\b",
    r"\bmarshal\.loads",
)


def _calls(text: str, name: str) -> list[str]:
    """The source of every call ``name(...)`` in ``text`` (balanced parentheses, so multi-line)."""
    calls = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        calls.append(text[match.start() : end + 1])
    return calls


def test_sources_load_no_pickle_and_trust_no_remote_code() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(SRC)
        if re.search(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|cloudpickle)\b", text, re.M):
            problems.append(f"{where}: imports a pickle module")
        for pattern in FORBIDDEN:
            if re.search(pattern, text):
                problems.append(f"{where}: {pattern}")
        problems += [f"{where}: {c}" for c in _calls(text, "torch.load") if "weights_only=True" not in c]
        problems += [f"{where}: {c}" for c in _calls(text, "np.load") if "allow_pickle=False" not in c]
        problems += [
            f"{where}: {c}"
            for c in _calls(text, "AutoModel.from_pretrained")
            if "use_safetensors=True" not in c and "use_safetensors=safetensors_only" not in c
        ]
    assert not problems, "\n".join(problems)


def test_hub_code_runs_only_with_the_flag() -> None:
    parser = build_parser()
    assert TrainConfig().trust_remote_code is False
    for command in (["train", "--output", "x"], ["evaluate", "--model", "x"]):
        assert parser.parse_args(command).trust_remote_code is False
        assert parser.parse_args([*command, "--trust-remote-code"]).trust_remote_code is True


@pytest.mark.parametrize("name", ["../x", "../../etc", "a/b", "/abs", "..", "x/../../y", ".hidden", ""])
def test_stage_names_cannot_leave_the_run_folder(tmp_path: Path, name: str) -> None:
    config = build_dataclass(TrainConfig, {"tasks": ["rte"], "train_cap": {"rte": 16}}, "test")
    with pytest.raises(BamError, match="names a folder"):
        stage_dir(tmp_path, name, config)
    folder = stage_dir(tmp_path, "teacher-rte-s13", config)
    assert folder.parent == tmp_path / "stages" and folder.name.startswith("teacher-rte-s13-")


def test_custom_task_given_by_path_names_its_stages_by_its_name(tmp_path: Path) -> None:
    """A task given as ``some/dir/task.yaml`` must not put its path into stage folder names."""
    folder = tmp_path / "my task"
    folder.mkdir()
    rows = "".join(
        f"{'good' if i % 2 else 'bad'} film number {i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(16)
    )
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("text\tlabel\n" + rows)
    (folder / "task.yaml").write_text(
        "name: reviews\nformat: tsv\nfiles: {train: train.tsv, dev: dev.tsv}\ntext_columns: text\n"
        "label_column: label\nlabels: [neg, pos]\n"
    )
    overrides = [f"tasks=[{folder / 'task.yaml'}]", "train.max_length=16", "train.num_threads=1",
                 f"train.encoder_overrides={TINY}".replace("'", ""), "train.train_cap={}", "student.epochs=1",
                 "teacher.epochs=1"]  # fmt: skip
    config = load_run_config("smoke", None, overrides)
    del config.methods["multi"]
    results = run(config, tmp_path / "run", quiet=True)
    assert set(results["methods"]["bam"]) == {"reviews", "avg"}
    stages = sorted(p.name for p in (tmp_path / "run" / "stages").iterdir())
    assert [s.rsplit("-", 1)[0] for s in stages] == ["bam-all-s13", "teacher-reviews-s13"]
