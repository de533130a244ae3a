"""One mixed batch's loss: each row reaches its own task's head and targets, whatever the batch's
order, its padding or how it is split between processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bam.config.train import TrainConfig
from bam.data.batching import collate
from bam.data.prepare import training_rows
from bam.errors import BamError
from bam.model import build_model
from bam.tasks import get_task
from bam.train.batch_loss import TaskData, batch_loss, load_task_data
from tests.helpers import TINY

ROWS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple:
    config = TrainConfig(tasks=["rte", "stsb"], train_cap={"rte": ROWS, "stsb": ROWS}, max_length=64)
    tasks = [get_task(name) for name in config.tasks]
    torch.manual_seed(0)
    model, tokenizer = build_model("minilm-l6", tasks, random_init=True, overrides=dict(TINY))
    model.eval()  # no dropout: a row's output depends on the row alone
    cache = tmp_path_factory.mktemp("features")
    data = [load_task_data(t, training_rows(t, config), config, tokenizer, cache) for t in tasks]
    generator = torch.Generator().manual_seed(1)
    data[0].teacher = torch.randn(ROWS, 2, generator=generator)  # logits of a made-up teacher
    data[1].teacher = torch.rand(ROWS, generator=generator) * 5  # scores of a made-up teacher
    return model, data, config, tokenizer.pad_token_id


def _loss(setup: tuple, task_ids: list[int], rows: list[int], lam: float) -> tuple[float, dict]:
    model, data, config, pad_id = setup
    with torch.no_grad():
        total, per_task = batch_loss(
            model, data, np.array(task_ids), np.array(rows), lam, config, pad_id, torch.device("cpu")
        )
    return total.item(), per_task


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_a_mixed_batch_is_the_sum_of_its_rows(setup, lam: float) -> None:
    task_ids, rows = [0, 1, 0, 1, 1, 0], [4, 0, 1, 5, 2, 3]
    total, per_task = _loss(setup, task_ids, rows, lam)
    one_by_one = [_loss(setup, [t], [r], lam)[0] for t, r in zip(task_ids, rows, strict=True)]
    assert total == pytest.approx(sum(one_by_one), rel=1e-5)
    assert {name: n for name, (_, n) in per_task.items()} == {"rte": 3, "stsb": 3}
    assert sum(s for s, _ in per_task.values()) == pytest.approx(total, rel=1e-6)
    rte_rows = sum(loss for loss, t in zip(one_by_one, task_ids, strict=True) if t == 0)
    assert per_task["rte"][0] == pytest.approx(rte_rows, rel=1e-5)


def test_order_and_process_shares_do_not_change_the_sum(setup) -> None:
    task_ids, rows = [0, 1, 0, 1, 1, 0], [4, 0, 1, 5, 2, 3]
    total, _ = _loss(setup, task_ids, rows, 0.5)
    order = [5, 2, 0, 4, 1, 3]
    shuffled, _ = _loss(setup, [task_ids[i] for i in order], [rows[i] for i in order], 0.5)
    shares = [_loss(setup, task_ids[rank::2], rows[rank::2], 0.5)[0] for rank in (0, 1)]
    assert shuffled == pytest.approx(total, rel=1e-5)
    assert sum(shares) == pytest.approx(total, rel=1e-5)


def test_lambda_moves_the_target_from_teacher_to_gold(setup) -> None:
    """At λ=1 the teacher is ignored; at λ=0 the gold labels are (a regression row by hand)."""
    model, data, config, pad_id = setup
    gold_only = [TaskData(d.task, d.features, d.gold, None) for d in data]
    plain = (model, gold_only, config, pad_id)
    assert _loss(setup, [0, 1], [2, 3], 1.0)[0] == pytest.approx(
        _loss(plain, [0, 1], [2, 3], 1.0)[0], rel=1e-6
    )
    with torch.no_grad():
        batch = collate([d.features for d in data], np.array([1]), np.array([3]), pad_id)
        score = model(**batch, groups={"stsb": torch.tensor([0])})["stsb"].reshape(()).item()
    expected = (score - data[1].teacher[3].item()) ** 2
    assert _loss(setup, [1], [3], 0.0)[0] == pytest.approx(expected, rel=1e-4)


def test_a_distilling_schedule_without_teacher_outputs_is_refused() -> None:
    config = TrainConfig(tasks=["rte"], train_cap={"rte": ROWS}, lambda_schedule="linear")
    task = get_task("rte")
    with pytest.raises(BamError, match="needs teacher outputs for task rte"):
        load_task_data(task, training_rows(task, config), config, None, None)
