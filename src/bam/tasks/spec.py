"""What a task is: one declarative record per task, read by every other layer.

A task names its files, its columns, its label values (exactly as the files write them), its
metrics and where it comes from on the Hugging Face hub. Nothing elsewhere in bam branches on a
task's name; it reads these fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class HashPart:
    """A fixed part of one file's rows, chosen by a salted SHA-256 of a column (not Python's
    ``hash``, which changes per process): the same rows on every machine and for every run seed,
    so two splits cut from one file (QNLI-pool's train and eval parts) never share a row."""

    column: str
    salt: str
    percent: int  # share of rows, 0-100, in the held-out part
    held_out: bool  # this split is the held-out part (else: every other row)

    def keeps(self, value: str) -> bool:
        digest = hashlib.sha256(f"{self.salt}\x1f{value}".encode()).digest()
        return (int.from_bytes(digest[:8], "big") % 100 < self.percent) == self.held_out


@dataclass(frozen=True)
class SplitFile:
    """One split's file: a path relative to the data folder (or absolute, for custom tasks)."""

    path: str
    labeled: bool = True
    header: bool = True
    # Column names for files without a header row (CoLA train/dev).
    columns: tuple[str, ...] = ()
    # Only these rows of the file (a split cut from a file shared with another split).
    part: HashPart | None = None


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face hub, and its column names there."""

    dataset: str
    config: str
    splits: dict[str, str]  # bam split name -> hub split name
    text_columns: tuple[str, ...]
    label_column: str = "label"
    index_column: str = "idx"


@dataclass(frozen=True)
class TaskSpec:
    name: str  # canonical lower-case name, e.g. "rte"
    display: str  # the name GLUE prints, e.g. "RTE"
    kind: TaskKind
    text_columns: tuple[str, ...]  # one column, or two for a sentence pair
    label_column: str | None
    labels: tuple[str, ...]  # label values as the files write them; () for regression
    splits: dict[str, SplitFile]
    metrics: tuple[str, ...]
    primary_metric: str
    dev_splits: tuple[str, ...] = ("dev",)
    test_splits: tuple[str, ...] = ("test",)
    aliases: tuple[str, ...] = ()
    index_column: str | None = None  # the id written into submission files
    format: Literal["tsv", "csv", "jsonl"] = "tsv"
    head: str | None = None  # predict with another task's head (AX uses MNLI's)
    in_bam_average: bool = True
    # GLUE leaderboard file per test split, e.g. {"test": "RTE.tsv"}.
    submission_files: dict[str, str] = field(default_factory=dict)
    hub: HubSource | None = None
    # Folder that relative split paths are resolved against; None means the data folder.
    root: str | None = None
    # Rows of the official files, per split: checks downloads, and plans runs without the data.
    expected_rows: dict[str, int] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def head_name(self) -> str:
        return self.head or self.name
