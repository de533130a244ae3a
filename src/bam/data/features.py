"""Tokenize a split once with the fast tokenizer, and cache the result on disk.

Token ids are stored flat (one int32 array for all rows plus row offsets), memory-mapped when read
back, so holding a large task costs little memory. The cache key covers the examples (texts and
labels in order), the tokenizer's full definition and the max length: any change re-tokenizes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from bam.data.examples import Examples
from bam.fileio import atomic_dir, fingerprint, sha256_file

CHUNK_ROWS = 2048


@dataclass
class Features:
    """Tokenized rows of one split: row ``i`` is ``input_ids[offsets[i]:offsets[i + 1]]``."""

    input_ids: np.ndarray  # int32, flat
    token_type_ids: np.ndarray  # int8, flat
    offsets: np.ndarray  # int64, len(rows) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[i], self.offsets[i + 1]
        return self.input_ids[start:end], self.token_type_ids[start:end]

    def take(self, rows: np.ndarray) -> Features:
        """The given rows, in that order, as features of their own (a slice to run a model on)."""
        pieces = [self.row(int(i)) for i in rows]
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(ids) for ids, _ in pieces])
        return Features(
            np.concatenate([ids for ids, _ in pieces]) if pieces else self.input_ids[:0],
            np.concatenate([types for _, types in pieces]) if pieces else self.token_type_ids[:0],
            offsets,
        )


def default_cache_dir() -> Path:
    return Path(os.environ.get("BAM_CACHE", Path.home() / ".cache" / "bam"))


@lru_cache(maxsize=16)
def _tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(definition.encode("utf-8")).hexdigest()[:16]


def features_key(examples: Examples, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    return fingerprint(
        {
            "examples": examples.fingerprint(),
            "tokenizer": _tokenizer_digest(tokenizer),
            "max_length": max_length,
            "version": 2,
        }
    )


def tokenize(examples: Examples, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Features:
    """Tokenize in chunks with the fast tokenizer (truncating the longer text of a pair first)."""
    ids_parts, type_parts, lengths = [], [], []
    for start in range(0, len(examples), CHUNK_ROWS):
        columns = [column[start : start + CHUNK_ROWS] for column in examples.texts]
        encoded = tokenizer(
            *columns,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=True,
        )
        for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"], strict=True):
            ids_parts.append(np.asarray(ids, dtype=np.int32))
            type_parts.append(np.asarray(types, dtype=np.int8))
            lengths.append(len(ids))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    empty32, empty8 = np.zeros(0, np.int32), np.zeros(0, np.int8)
    return Features(
        np.concatenate(ids_parts) if ids_parts else empty32,
        np.concatenate(type_parts) if type_parts else empty8,
        offsets,
    )


_ARRAYS = ("input_ids", "token_type_ids", "offsets")


def load_or_tokenize(
    examples: Examples,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
) -> Features:
    """Cached features for ``examples``; a missing or damaged cache entry is rebuilt, not trusted."""
    key = features_key(examples, tokenizer, max_length)
    folder = Path(cache_dir or default_cache_dir()) / "features" / key
    cached = _read_cache(folder, len(examples))
    if cached is not None:
        return cached
    features = tokenize(examples, tokenizer, max_length)
    with atomic_dir(folder) as tmp:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(features, name), allow_pickle=False)
        meta = {
            "rows": len(examples),
            "task": examples.task,
            "split": examples.split,
            "key": key,
            "sha256": {name: sha256_file(tmp / f"{name}.npy") for name in _ARRAYS},
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
    return _read_cache(folder, len(examples)) or features


def _read_cache(folder: Path, rows: int) -> Features | None:
    """The cached arrays, or None when missing, damaged or not matching their checksums."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        checksums = meta["sha256"]
        if any(sha256_file(folder / f"{name}.npy") != checksums[name] for name in _ARRAYS):
            return None
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS
        }
    except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError):
        return None
    features = Features(**arrays)
    valid = (
        meta.get("rows") == rows
        and len(features) == rows
        and features.offsets[-1] == len(features.input_ids) == len(features.token_type_ids)
    )
    return features if valid else None
