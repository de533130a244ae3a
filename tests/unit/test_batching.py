from __future__ import annotations

import numpy as np
import pytest

from bam.data.batching import collate, epoch_plan, inference_order, steps_per_epoch, task_shares
from bam.data.features import Features

# GLUE training sizes with MRPC and STS-B doubled, and the shares the issue pins (to 0.1).
PAPER_SIZES = {
    "cola": 8551,
    "mnli": 392702,
    "mrpc": 7336,
    "qnli": 108436,
    "qqp": 363869,
    "sst2": 67349,
    "stsb": 11498,
    "rte": 2490,
}
PAPER_SHARES = {
    "mnli": 35.8,
    "qqp": 33.8,
    "qnli": 13.6,
    "sst2": 9.5,
    "stsb": 2.5,
    "cola": 2.0,
    "mrpc": 1.8,
    "rte": 0.8,
}


def test_sampling_shares_match_the_paper_setting() -> None:
    shares = task_shares(PAPER_SIZES, 0.75)
    assert {k: round(100 * v, 1) for k, v in shares.items()} == PAPER_SHARES


def test_alpha_zero_is_uniform_and_one_is_proportional() -> None:
    sizes = {"a": 10, "b": 30}
    assert task_shares(sizes, 0.0) == {"a": 0.5, "b": 0.5}
    assert task_shares(sizes, 1.0) == pytest.approx({"a": 0.25, "b": 0.75})


@pytest.mark.parametrize("boosts", [None, [1.0, 3.0, 1.0]])
def test_epoch_plan_draws_tasks_by_share(boosts: list[float] | None) -> None:
    sizes = [4000, 1000, 250]
    lengths = [np.full(n, 10) for n in sizes]
    counts = np.zeros(3)
    for epoch in range(5):
        for batch in epoch_plan(lengths, 32, 0.75, seed=1, epoch=epoch, boosts=boosts):
            counts += np.bincount(batch.task_ids, minlength=3)
    by_index = dict(enumerate(boosts)) if boosts else None
    expected = np.array(list(task_shares(dict(enumerate(sizes)), 0.75, by_index).values()))
    assert np.allclose(counts / counts.sum(), expected, atol=0.01)


def test_a_boost_multiplies_one_task_weight_before_normalising() -> None:
    sizes = {"a": 10, "b": 30}
    assert task_shares(sizes, 0.0, {"a": 3.0}) == pytest.approx({"a": 0.75, "b": 0.25})
    assert task_shares(sizes, 1.0, {"b": 1.0}) == task_shares(sizes, 1.0)


def test_single_task_epoch_sees_every_row_once_and_plan_repeats() -> None:
    lengths = [np.random.default_rng(0).integers(5, 90, size=1000)]
    plan = epoch_plan(lengths, 32, 0.75, seed=3, epoch=0)
    rows = np.concatenate([b.rows for b in plan])
    assert sorted(rows.tolist()) == list(range(1000))
    assert len(plan) == steps_per_epoch([1000], 32)
    again = epoch_plan(lengths, 32, 0.75, seed=3, epoch=0)
    assert all((a.rows == b.rows).all() for a, b in zip(plan, again, strict=True))
    other = epoch_plan(lengths, 32, 0.75, seed=3, epoch=1)
    assert any((a.rows != b.rows).any() for a, b in zip(plan, other, strict=False))


@pytest.mark.parametrize("sizes", [[1000], [700, 301], [6], [64]])
def test_no_batch_is_smaller_than_the_processes_that_share_it(sizes: list[int]) -> None:
    """1,001 rows in batches of 32 leave a last batch of 9: too few for 16 processes."""
    lengths = [np.random.default_rng(0).integers(5, 90, size=n) for n in sizes]
    for processes in (1, 4, 16):
        plan = epoch_plan(lengths, 32, 0.75, seed=3, epoch=0, min_rows=processes)
        assert len(plan) == steps_per_epoch(sizes, 32, min_rows=processes)
        assert sum(len(b.rows) for b in plan) == sum(sizes)
        if sum(sizes) >= processes:
            assert min(len(b.rows) for b in plan) >= processes
    merged = epoch_plan(lengths, 32, 0.75, seed=3, epoch=0, min_rows=16)
    plain = epoch_plan(lengths, 32, 0.75, seed=3, epoch=0)
    assert len(plain) - len(merged) == (0 < sum(sizes) % 32 < 16 and len(plain) > 1)


def test_length_grouping_reduces_padding() -> None:
    lengths = [np.random.default_rng(0).integers(5, 120, size=3200)]
    plan = epoch_plan(lengths, 32, 0.75, seed=0, epoch=0)
    padded = sum(len(b.rows) * lengths[0][b.rows].max() for b in plan)
    rng = np.random.default_rng(0)
    order = rng.permutation(3200)
    random_padded = sum(32 * lengths[0][order[i : i + 32]].max() for i in range(0, 3200, 32))
    assert padded < 0.75 * random_padded


def test_collate_pads_dynamically_and_masks() -> None:
    features = Features(
        input_ids=np.array([101, 5, 102, 101, 6, 7, 8, 102], dtype=np.int32),
        token_type_ids=np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=np.int8),
        offsets=np.array([0, 3, 8]),
    )
    batch = collate([features], np.array([0, 0]), np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].tolist() == [[101, 5, 102, 0, 0], [101, 6, 7, 8, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 1, 1, 1]]


def test_inference_order_is_longest_first_and_complete() -> None:
    lengths = np.array([3, 9, 1, 7, 5])
    batches = inference_order(lengths, 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]
