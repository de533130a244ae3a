"""The ``bam`` command line: ``app`` parses and dispatches, ``commands`` holds the after-training commands."""

from bam.cli.app import main

__all__ = ["main"]
