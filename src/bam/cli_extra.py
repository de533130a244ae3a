"""Commands for what comes after training: predict, submit, export, report."""

from __future__ import annotations

COMMANDS: list = []
