"""What the optional extras of ``bam-nlu`` install, and the one-line error when one is missing.

The core install trains, evaluates and predicts. Plots (``bam-nlu[plots]``: matplotlib),
TensorBoard logs (``[tensorboard]``) and GLUE from the Hugging Face hub (``[hub]``: datasets) are
extras, so a user who never draws a plot does not install ~400 MB for it. Each use site asks this
module for its package; a missing one is a :class:`MissingExtra` naming the pip command, never
an ``ImportError`` traceback (nor, for TensorBoard, accelerate silently logging nothing).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

from bam.errors import BamError

# extra -> (the module it provides, what needs it): one home for "which extra installs what".
EXTRAS = {
    "plots": ("matplotlib", "plots need"),
    "tensorboard": ("tensorboard", "log_with: tensorboard needs"),
    "hub": ("datasets", "hub data (data_dir: hub) needs"),
}


class MissingExtra(BamError):
    """An optional package is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    """``plots need matplotlib: pip install 'bam-nlu[plots]'``."""
    module, needed_by = EXTRAS[extra]
    return f"{needed_by} {module}: pip install 'bam-nlu[{extra}]'"


def require(extra: str) -> ModuleType:
    """The module ``extra`` provides, imported; :class:`MissingExtra` when it is not installed."""
    module = EXTRAS[extra][0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(install_hint(extra)) from None


def check_trackers(log_with: Iterable[str]) -> None:
    """Refuse ``log_with: [tensorboard]`` without TensorBoard installed: accelerate would skip the
    tracker with a debug message and the run would write no logs. Called before training starts."""
    if "tensorboard" in log_with and not any(_installed(name) for name in ("tensorboard", "tensorboardX")):
        raise MissingExtra(install_hint("tensorboard"))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules as None (blocked), or without a spec
        return False
