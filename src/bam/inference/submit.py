"""GLUE leaderboard submission: one ``<Task>.tsv`` per test split, zipped, from one model.

Each file is ``index<TAB>prediction`` with the test file's own ids. Predictions are written as the
task's files write labels (``entailment``/``not_entailment``, ``0``/``1``, ...), read from the task
table, so nothing here branches on a task's name. Regression scores are clipped to the task's
range (STS-B: [0, 5]) and written with 3 decimals. Tasks the model has no head for, or whose test
file is not in the data folder, are listed as missing with the reason.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bam.data.load import default_data_dir, is_hub, load_examples
from bam.data.readers import split_path
from bam.errors import BamError
from bam.fileio import atomic_write_bytes
from bam.inference.forward import outputs_to_predictions
from bam.inference.predict import Predictor
from bam.tasks import GLUE_TASKS
from bam.tasks.spec import TaskSpec

SCORE_RANGE = (0.0, 5.0)  # STS-B, the only GLUE regression task
HEADER = "index\tprediction\n"


def format_predictions(task: TaskSpec, outputs: np.ndarray) -> list[str]:
    """Model outputs → the values a submission file writes (label as the files spell it, or score)."""
    predictions = outputs_to_predictions(outputs, task.kind)
    if task.kind == "regression":
        return [f"{x:.3f}" for x in np.clip(predictions, *SCORE_RANGE)]
    return [task.labels[int(i)] for i in predictions]


def _missing_test_file(task: TaskSpec, split: str, data_dir: str | Path | None) -> str | None:
    """Why the test split cannot be read from files (None when it can, or when it comes from the hub)."""
    if is_hub(data_dir) and task.hub is not None:
        return None
    folder = default_data_dir() if data_dir is None else Path(data_dir)
    path = split_path(task, split, folder)
    if path.is_file():
        return None
    where = "bam's built-in data" if data_dir is None else str(folder)
    return f"no test file ({task.splits[split].path} not in {where})"


def write_submission(
    model_dir: str | Path,
    out_zip: str | Path,
    data_dir: str | Path | None = None,
    *,
    batch_size: int = 128,
    predictor: Predictor | None = None,
) -> dict[str, Any]:
    """Predict every GLUE test split the model and data allow; write them into ``out_zip``.

    ``data_dir``: None for bam's vendored copy, a ``glue_data`` folder, or ``"hub"``. Returns
    ``{"written": [file names], "missing": [{"file": name, "reason": why}]}``. Refuses to write an
    empty zip.
    """
    predictor = predictor or Predictor.load(model_dir)
    files: dict[str, str] = {}
    missing: list[dict[str, str]] = []
    for task in GLUE_TASKS.values():
        for split in task.test_splits:
            name = task.submission_files[split]
            if task.head_name not in predictor.tasks:
                missing.append({"file": name, "reason": f"model has no {task.head_name} head"})
                continue
            reason = _missing_test_file(task, split, data_dir)
            if reason is not None:
                missing.append({"file": name, "reason": reason})
                continue
            examples = load_examples(task, split, data_dir)
            outputs = predictor.outputs(task.head_name, examples, batch_size)
            values = format_predictions(task, outputs)
            files[name] = HEADER + "".join(
                f"{row_id}\t{value}\n" for row_id, value in zip(examples.ids, values, strict=True)
            )
    if not files:
        reasons = "; ".join(f"{m['file']}: {m['reason']}" for m in missing)
        raise BamError(f"{out_zip}: nothing to submit ({reasons})")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    atomic_write_bytes(out_zip, buffer.getvalue())
    return {"written": list(files), "missing": missing}
