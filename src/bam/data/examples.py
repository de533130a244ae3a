"""A task split held in memory: texts, labels and row ids, plus a fingerprint of them in order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Examples:
    task: str
    split: str
    texts: tuple[list[str], ...]  # one list per text column, all of the same length
    labels: np.ndarray | None  # int64 label ids into TaskSpec.labels, float32 scores, or None
    ids: list[str]  # the file's index column, or the row number
    source: str  # where the rows came from, for messages

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """SHA-256 of every text and label in order: any change of data or order changes it."""
        digest = hashlib.sha256()
        for i in range(len(self)):
            for column in self.texts:
                digest.update(column[i].encode("utf-8"))
                digest.update(b"\x1f")
            if self.labels is not None:
                digest.update(repr(self.labels[i].item()).encode("ascii"))
            digest.update(b"\x1e")
        return digest.hexdigest()

    def subset(self, indices: np.ndarray | list[int]) -> Examples:
        """A view of some rows, in the given order (used for capped training sets)."""
        idx = [int(i) for i in indices]
        return Examples(
            task=self.task,
            split=self.split,
            texts=tuple([column[i] for i in idx] for column in self.texts),
            labels=None if self.labels is None else self.labels[idx],
            ids=[self.ids[i] for i in idx],
            source=self.source,
        )
