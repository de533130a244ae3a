"""bam: Born-Again Multi-task networks for NLU on PyTorch and Hugging Face."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__", "task_from_data"]

if TYPE_CHECKING:
    from bam.data.table_task import task_from_data
    from bam.inference.predict import Predictor


def __getattr__(name: str) -> Any:
    """``bam.Predictor`` and ``bam.task_from_data`` on first use only, so that ``import bam``
    does not load torch."""
    if name == "Predictor":
        from bam.inference.predict import Predictor

        return Predictor
    if name == "task_from_data":
        from bam.data.table_task import task_from_data

        return task_from_data
    raise AttributeError(f"module 'bam' has no attribute {name!r}")
