"""What every subcommand shares: the verbosity flags and the check on counts."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, NoReturn

from bam.config.train import PRECISIONS
from bam.errors import BamError

if TYPE_CHECKING:
    from bam.precision import Precision


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that a bad command line is one error line (with where to find the usage),
    as every other bad input to bam is, not the usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging, library progress too")


def add_model(parser: argparse.ArgumentParser) -> None:
    """``--model``: what every command after training reads (bam.model.resolve_model_dir)."""
    parser.add_argument("--model", required=True, help="model folder (or a training output folder)")


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision``: what a saved model runs in (bam.precision.model_precision)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="default: the precision the model trained in (bf16 only where the device has bf16 units); "
        "auto: bf16 where the device has bf16 units, else fp32",
    )


def say_precision(precision: Precision, quiet: bool) -> None:
    """One line on stderr (stdout may carry the predictions), once the work is done, so that an
    error stays the only line: which precision ran, and why."""
    if not quiet:
        print(f"precision: {precision.name} ({precision.reason})", file=sys.stderr)


def at_least_one(flag: str, value: int) -> None:
    """A count such as ``--batch-size`` below 1 ran no batch and wrote zeros as results."""
    if value < 1:
        raise BamError(f"{flag} must be at least 1, got {value}")
