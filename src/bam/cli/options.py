"""What every subcommand shares: the verbosity flags and the check on counts."""

from __future__ import annotations

import argparse

from bam.errors import BamError


def add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging, library progress too")


def add_model(parser: argparse.ArgumentParser) -> None:
    """``--model``: what every command after training reads (bam.model.resolve_model_dir)."""
    parser.add_argument("--model", required=True, help="model folder (or a training output folder)")


def at_least_one(flag: str, value: int) -> None:
    """A count such as ``--batch-size`` below 1 ran no batch and wrote zeros as results."""
    if value < 1:
        raise BamError(f"{flag} must be at least 1, got {value}")
