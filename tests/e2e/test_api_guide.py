"""docs/api.md's python blocks run, in order, as a reader would run them: the guide cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def test_every_python_block_of_the_api_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, "the guide's python blocks were not found"
    monkeypatch.chdir(tmp_path)  # runs/ and exported/ land here
    monkeypatch.setenv("BAM_CACHE", str(tmp_path / "cache"))  # task_from_data's tasks, tokenized rows
    namespace: dict[str, object] = {"__name__": "api_guide"}
    for number, code in enumerate(blocks, start=1):
        exec(compile(code, f"{GUIDE.name} block {number}", "exec"), namespace)
    assert (tmp_path / "exported" / "rte" / "README.md").is_file()
