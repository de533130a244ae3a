"""The time part of ``bam run --dry-run``'s plan: rates timed here, and a stage's seconds from them.

A stage's time is its training steps plus the forward passes around them: its dev evaluations
(every labelled dev row of each task it trains, each time the loop evaluates: every
``eval_every`` steps, or each epoch's end, and after the last step) and, for a stage whose
outputs a student reads, recording those outputs on the student's training rows (once, before
the student trains). Both rates are timed on the run's model in the stage's precision
(:func:`measure_rate`): training steps as ``bam.train.loop`` takes them, inference batches
through :func:`bam.inference.forward.predict_outputs` as evaluation and recording run them.
Each is fitted as seconds = overhead per step + FLOPs / rate; a forward pass counts 1/3 of a
training step's FLOPs (2 × parameters × tokens: :meth:`bam.flops.FlopModel.estimate`).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from bam.config.train import TrainConfig
from bam.cpu.onednn import onednn_linears
from bam.data.features import Features
from bam.experiment.record import TEACHER_BATCH
from bam.flops import FlopModel
from bam.inference.forward import predict_outputs
from bam.model import BamModel, default_device
from bam.precision import Precision, autocast, resolve_precision
from bam.tasks import get_task
from bam.train.optim import build_optimizer
from bam.train.setup import build_run_model

CALIBRATION_LENGTHS = (16, 64)  # tokens per row of the two timed batch shapes (at most max_length)
CALIBRATION_STEPS = 3  # timed steps per shape, after one untimed warm-up step
Rows = tuple[int, float]  # rows of a split, and their mean tokens per row


@dataclass(frozen=True)
class StepRate:
    """A step's seconds on this machine: ``overhead`` per step plus its FLOPs (as
    :meth:`FlopModel.estimate` counts them) at ``flops_per_second``; ``how`` says where from."""

    overhead: float
    flops_per_second: float
    how: str

    def seconds(self, steps: int, flops: float) -> float:
        return steps * self.overhead + flops / self.flops_per_second


@dataclass(frozen=True)
class Rates:
    """The two rates of a plan: a training step's, and an inference batch's (eval mode, no
    gradients, the stage's precision); FLOPs of the latter counted as a forward pass's."""

    training: StepRate
    inference: StepRate

    @property
    def how(self) -> str:
        return f"{self.training.how}; {self.inference.how}"


@dataclass(frozen=True)
class Work:
    """What one stage computes: ``steps`` training steps of ``flops`` in all, ``evaluations``
    passes over its ``dev`` splits at ``eval_batch`` rows per batch, and the teacher outputs
    recorded from it (``recorded``: the rows of each file, at :data:`TEACHER_BATCH` per batch)."""

    steps: int
    flops: float
    evaluations: int
    eval_batch: int
    dev: tuple[Rows, ...] = ()
    recorded: tuple[Rows, ...] = ()

    def training_seconds(self, rates: Rates) -> float:
        return rates.training.seconds(self.steps, self.flops)

    def evaluation_seconds(self, rates: Rates, model: FlopModel) -> float:
        return self.evaluations * sum(_forward(rates, model, split, self.eval_batch) for split in self.dev)

    def recording_seconds(self, rates: Rates, model: FlopModel) -> float:
        return sum(_forward(rates, model, rows, TEACHER_BATCH) for rows in self.recorded)

    def seconds(self, rates: Rates, model: FlopModel) -> float:
        return (
            self.training_seconds(rates)
            + self.evaluation_seconds(rates, model)
            + self.recording_seconds(rates, model)
        )


def _forward(rates: Rates, model: FlopModel, split: Rows, batch: int) -> float:
    """Seconds of one forward pass over ``split`` in batches of ``batch`` rows."""
    rows, tokens = split
    return rates.inference.seconds(math.ceil(rows / batch), model.estimate(rows * tokens, train=False))


def evaluations(steps: int, per_epoch: int, eval_every: int) -> int:
    """How many times the loop evaluates on dev in ``steps`` steps: every ``eval_every`` steps
    (0: every epoch's ``per_epoch`` steps), and after the last step when that is not one of them."""
    every = eval_every or per_epoch
    return steps // every + (1 if steps % every else 0)


def measure_rate(config: TrainConfig, model: FlopModel) -> Rates:
    """Time training steps of ``config``'s model (its optimizer, precision and threads, on this
    device), then inference batches of ``eval_batch_size`` rows, on random rows at two lengths;
    fit seconds = overhead + FLOPs / rate through each, so short rows' fixed cost per step is not
    spread over their few tokens."""
    device = default_device()
    precision = resolve_precision(config.precision, device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    tasks = [get_task(name) for name in config.tasks]
    net, _ = build_run_model(config, tasks)
    net.to(device).train()
    optimizer = build_optimizer(net, config.learning_rate, config.weight_decay, config.layerwise_decay)
    lengths = sorted({min(n, config.max_length) for n in CALIBRATION_LENGTHS})
    shapes = "/".join(map(str, lengths))
    step = [_step_seconds(net, optimizer, config, n, precision, device) for n in lengths]
    train = _fit([(model.estimate(config.batch_size * n), t) for n, t in zip(lengths, step, strict=True)])
    rows = config.eval_batch_size
    batch = [_batch_seconds(net, config, n, precision) for n in lengths]
    infer = _fit([(model.estimate(rows * n, train=False), t) for n, t in zip(lengths, batch, strict=True)])
    count = torch.get_num_threads()
    threads = "" if device.type != "cpu" else f", {count} thread{'s' if count > 1 else ''}"
    training = StepRate(
        *train,
        f"timed here: {CALIBRATION_STEPS} training steps of {config.model} per shape, {precision.name} "
        f"on {device.type}{threads}, batch {config.batch_size} × {shapes} tokens: "
        f"{train[0] * 1e3:,.0f} ms per step + {train[1] / 1e9:,.0f} GFLOP/s (as 6 × parameters × tokens)",
    )
    inference = StepRate(
        *infer,
        f"{CALIBRATION_STEPS} inference batches per shape, batch {config.eval_batch_size} × {shapes} tokens: "
        f"{infer[0] * 1e3:,.0f} ms per batch + {infer[1] / 1e9:,.0f} GFLOP/s (as 2 × parameters × tokens)",
    )
    return Rates(training, inference)


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(overhead per step, FLOPs per second) through (FLOPs, seconds) at the shortest and longest
    shape."""
    (low_flops, low_time), (high_flops, high_time) = points[0], points[-1]
    if high_time > low_time and high_flops > low_flops:
        rate = (high_flops - low_flops) / (high_time - low_time)
        return max(0.0, low_time - low_flops / rate), rate
    return 0.0, high_flops / high_time  # one shape, or too noisy to separate: all of it FLOPs'


def _step_seconds(
    net: BamModel,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    length: int,
    precision: Precision,
    device: torch.device,
) -> float:
    """Median seconds of a training step (forward, backward, clip, optimizer) on random token ids:
    the same matmuls as real rows of that length; data loading and evaluation are not in it."""
    head = get_task(config.tasks[0]).head_name
    vocab = int(net.encoder.config.vocab_size)
    ids = torch.randint(vocab, (config.batch_size, length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    times = []
    for _ in range(1 + CALIBRATION_STEPS):
        began = time.perf_counter()
        with autocast(precision, device):
            loss = net(ids, mask)[head].float().pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def _batch_seconds(net: BamModel, config: TrainConfig, length: int, precision: Precision) -> float:
    """Median seconds of an inference batch of ``eval_batch_size`` random rows of ``length`` tokens,
    through :func:`predict_outputs` as evaluation runs it (eval mode, no gradients, oneDNN's
    fused layers for fp32 on CPU); its outputs come back to the CPU, so a GPU has finished."""
    rows = config.eval_batch_size
    vocab = int(net.encoder.config.vocab_size)
    ids = np.random.default_rng(0).integers(vocab, size=rows * length, dtype=np.int32)
    features = Features(ids, np.zeros(rows * length, dtype=np.int8), np.arange(rows + 1) * length)
    head = get_task(config.tasks[0]).head_name
    times = []
    net.eval()  # the weights packed once for all batches, as once per evaluation of a split
    with onednn_linears(net) if not precision.mixed else contextlib.nullcontext():
        for _ in range(1 + CALIBRATION_STEPS):
            began = time.perf_counter()
            predict_outputs(net, features, head, 0, rows, precision=precision)
            times.append(time.perf_counter() - began)
    net.train()
    return statistics.median(times[1:])
