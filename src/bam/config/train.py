"""One strict configuration object for every training stage, read from YAML and ``key=value``.

Teachers, the multi-task baseline and the BAM student are all a :class:`TrainConfig`; they differ
only in their values (tasks, learning rate, where targets come from, the λ schedule). Keys have
the same names in YAML files and on the command line; an unknown key or a value of the wrong type
is a :class:`BamError` naming the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bam import safeyaml
from bam.errors import BamError

# Field metadata for settings added after stages were cached: while the switch named here is at
# its default they are left out of :func:`config_to_dict`, and so out of every stage key and
# ``train_config.json``: the stages trained before they existed keep their folders.
CROSS_FIT = {"keyed_when_set": "cv_folds"}
ANNEALING_HORIZON = {"keyed_when_set": "lambda_horizon"}
SAMPLING_BOOSTS = {"keyed_when_set": "sampling_boost"}
ADAPTIVE_SAMPLING = {"keyed_when_set": "sampling"}
WEIGHT_AVERAGE = {"keyed_when_set": "ema_decay"}
ACCUMULATION = {"keyed_when_set": "gradient_accumulation_steps"}
COMPILED = {"keyed_when_set": "compile"}
ATTENTION = {"keyed_when_set": "attention"}
START = {"keyed_when_set": "init_model"}
# Settings that do not change the trained weights (logging, how often to checkpoint, threads, the
# evaluation batch): left out of every stage key, so turning TensorBoard on trains nothing again.
NOT_KEYED = {"keyed": False}
# Where targets come from: bam.distill.schedules implements one λ function for each name.
LAMBDA_SCHEDULES = ("linear", "constant", "gold", "teacher")
SAMPLINGS = ("static", "adaptive")  # bam.train.sampling
LAG_TARGETS = ("teacher", "annealed")  # bam.train.sampling: what the adaptive sampler's lag is against
LAG_SCALES = ("mean", "median")  # bam.data.batching.lag_factors: what each task's lag is divided by
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # resolved per device by bam.precision


@dataclass
class TrainConfig:
    """Everything one training stage needs. Defaults are the paper's teacher settings."""

    tasks: list[str] = field(default_factory=lambda: ["rte"])
    model: str = "minilm-l6"  # packaged default, a hub id, or a local folder
    random_init: bool = False  # start from the encoder's config, not its weights (tests, smoke)
    encoder_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {num_hidden_layers: 2}
    trust_remote_code: bool = False
    pooling: str = "auto"  # cls | mean | auto (mean for sentence-transformers folders that mean-pool)
    data_dir: str | None = None  # None: the vendored GLUE copy; "hub": nyu-mll/glue via datasets
    max_length: int = 128
    train_cap: dict[str, int] = field(default_factory=dict)  # task -> rows kept (chosen by seed)
    both_orders: list[str] = field(default_factory=list)  # pair tasks also trained as (b, a)
    learning_rate: float = 5e-5
    layerwise_decay: float = 0.9  # lr = base * decay^(depth from the top); 1.0 turns it off
    batch_size: int = 32
    epochs: float = 3.0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    dropout_rng: str = "sfc64"  # CPU dropout masks: sfc64 (numpy, ~10% faster steps) | torch (bernoulli_)
    sampling_alpha: float = 0.75  # task drawn with probability ∝ |D|^alpha
    # task -> w: that task is drawn ∝ w·|D|^alpha (1 for tasks not named), e.g. {cola: 2.0}
    sampling_boost: dict[str, float] = field(default_factory=dict, metadata=SAMPLING_BOOSTS)
    # static: the shares above throughout. adaptive: each task's weight also × g(its lag behind its
    # target on a fixed slice of its training rows), re-measured during training (bam.train.sampling).
    sampling: str = field(default="static", metadata=ADAPTIVE_SAMPLING)
    sampling_update_every: int = field(default=0, metadata=ADAPTIVE_SAMPLING)  # steps; 0: epoch starts
    sampling_slice: int = field(default=256, metadata=ADAPTIVE_SAMPLING)  # training rows measured per task
    # adaptive: the lag is behind the teacher's outputs (teacher), or behind the target the student
    # trains toward at the update step, λ·gold + (1−λ)·teacher (annealed); each task's lag is divided
    # by the mean or the median lag of all tasks (median: one outlier cannot floor the others).
    sampling_lag_target: str = field(default="teacher", metadata={"keyed_when_set": "sampling_lag_target"})
    sampling_lag_scale: str = field(default="mean", metadata={"keyed_when_set": "sampling_lag_scale"})
    lambda_schedule: str = "gold"  # linear | constant | gold | teacher
    lambda_constant: float = 0.5
    # The fraction of the steps λ's schedule runs over; gold labels alone after it. 1: all steps.
    lambda_horizon: float = field(default=1.0, metadata=ANNEALING_HORIZON)
    temperature: float = 1.0
    # Keep (evaluate, save) an exponential moving average of the weights; 0: the weights themselves.
    ema_decay: float = field(default=0.0, metadata=WEIGHT_AVERAGE)
    teacher_outputs: dict[str, list[str]] = field(default_factory=dict)  # task -> files (ensemble)
    # A bam model folder (or a training folder holding one) whose encoder and these tasks' heads the
    # model starts from, not the encoder's own weights: fine-tuning after multi-task training.
    init_model: str | None = field(default=None, metadata=START)
    eval_every: int = 0  # steps between dev evaluations; 0: at each epoch end
    checkpoint_every: int = field(default=200, metadata=NOT_KEYED)  # steps between checkpoints; 0: epoch ends
    keep_best: bool = True  # keep the checkpoint with the best dev average, not the last
    eval_batch_size: int = field(default=32, metadata=NOT_KEYED)
    seed: int = 13
    num_threads: int = field(default=0, metadata=NOT_KEYED)  # torch intra-op threads; 0: torch's default
    log_with: list[str] = field(default_factory=list, metadata=NOT_KEYED)  # tensorboard: the extra
    # auto | fp32 | bf16 | fp16: auto is bf16 on devices with native bf16 units (bam.precision).
    # The stage key holds the precision that ran, not this setting.
    precision: str = "auto"
    # Each batch in this many slices, gradients summed before one optimizer step: the same update
    # as the whole batch at once, in less memory (glue-paper's batch 128 on a 16 GB GPU).
    gradient_accumulation_steps: int = field(default=1, metadata=ACCUMULATION)
    compile: bool = field(default=False, metadata=COMPILED)  # torch.compile the encoder (GPU runs)
    attention: str = field(default="sdpa", metadata=ATTENTION)  # the encoder's attn_implementation
    # Cross-fitting teachers (``bam run`` sets these per fold teacher): the training rows are
    # split into cv_folds fixed folds and fold cv_holdout is left out. 0 folds: every row.
    cv_folds: int = field(default=0, metadata=CROSS_FIT)
    cv_holdout: int = field(default=0, metadata=CROSS_FIT)

    def __post_init__(self) -> None:
        _check_ranges(self)


def _check_ranges(config: TrainConfig) -> None:
    """A value of the right type that training cannot use is refused here, by its key, not later
    as a traceback from deep inside torch (or, for ``bam run``, after hours of teacher training)."""
    finite, schedules = math.isfinite, ", ".join(LAMBDA_SCHEDULES)
    rules = {
        "max_length": (config.max_length >= 2, "at least 2"),
        "batch_size": (config.batch_size >= 1, "at least 1"),
        "eval_batch_size": (config.eval_batch_size >= 1, "at least 1"),
        "precision": (config.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        "gradient_accumulation_steps": (
            1 <= config.gradient_accumulation_steps <= config.batch_size,
            "from 1 to batch_size",
        ),
        "epochs": (config.epochs > 0 and finite(config.epochs), "a positive number"),
        "learning_rate": (config.learning_rate > 0 and finite(config.learning_rate), "a positive number"),
        "layerwise_decay": (0 < config.layerwise_decay <= 1, "in (0, 1]"),
        "warmup_fraction": (0 <= config.warmup_fraction <= 1, "in [0, 1]"),
        "weight_decay": (config.weight_decay >= 0 and finite(config.weight_decay), "0 or more"),
        "max_grad_norm": (config.max_grad_norm > 0 and finite(config.max_grad_norm), "a positive number"),
        "dropout": (0 <= config.dropout < 1, "in [0, 1)"),
        "dropout_rng": (config.dropout_rng in ("sfc64", "torch"), "one of sfc64, torch"),
        "sampling_alpha": (config.sampling_alpha >= 0 and finite(config.sampling_alpha), "0 or more"),
        "lambda_schedule": (config.lambda_schedule in LAMBDA_SCHEDULES, f"one of {schedules}"),
        "sampling": (config.sampling in SAMPLINGS, f"one of {', '.join(SAMPLINGS)}"),
        "sampling_update_every": (config.sampling_update_every >= 0, "0 (each epoch start) or more"),
        "sampling_slice": (config.sampling_slice >= 2, "at least 2"),
        "sampling_lag_target": (
            config.sampling_lag_target in LAG_TARGETS,
            f"one of {', '.join(LAG_TARGETS)}",
        ),
        "sampling_lag_scale": (config.sampling_lag_scale in LAG_SCALES, f"one of {', '.join(LAG_SCALES)}"),
        "lambda_constant": (0 <= config.lambda_constant <= 1, "in [0, 1]"),
        "lambda_horizon": (0 < config.lambda_horizon <= 1, "in (0, 1]"),
        "pooling": (config.pooling in ("auto", "cls", "mean"), "one of auto, cls, mean"),
        "temperature": (config.temperature > 0 and finite(config.temperature), "a positive number"),
        "ema_decay": (0 <= config.ema_decay < 1, "in [0, 1) (0: off)"),
        "eval_every": (config.eval_every >= 0, "0 or more"),
        "checkpoint_every": (config.checkpoint_every >= 0, "0 or more"),
        "num_threads": (config.num_threads >= 0, "0 or more"),
        "seed": (0 <= config.seed < 2**32, "a whole number from 0 to 2**32 - 1"),
        "cv_folds": (config.cv_folds == 0 or config.cv_folds >= 2, "0 (off) or at least 2"),
        "cv_holdout": (
            0 <= config.cv_holdout < max(config.cv_folds, 1),
            "a fold number from 0 to cv_folds - 1 (0 without cv_folds)",
        ),
    }
    for key, (ok, wanted) in rules.items():
        if not ok:
            raise BamError(f"{key} must be {wanted}, got {getattr(config, key)!r}")
    for task, cap in config.train_cap.items():
        if cap < 1:
            raise BamError(f"train_cap.{task} must be at least 1, got {cap}")
    for task, boost in config.sampling_boost.items():
        if not (boost > 0 and finite(boost)):
            raise BamError(f"sampling_boost.{task} must be a positive number, got {boost!r}")


def check_named_once(key: str, names: list[Any]) -> None:
    """Refuse a list that names something twice (``tasks: [rte, RTE]``): one head would get two
    tasks' rows, and a run would plan the same stage twice."""
    seen: set[Any] = set()
    for name in names:
        if name in seen:
            raise BamError(f"{key}: {name} is named twice")
        seen.add(name)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except BamError:
                continue
        raise BamError(f"{source}: {key} must be {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected: `tasks=rte`
        if not isinstance(value, list):
            raise BamError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise BamError(f"{source}: {key} must be a mapping, got {value!r}")
        return {
            _coerce(k, key_type, key, source): _coerce(v, value_type, f"{key}.{k}", source)
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str and isinstance(value, str):
        return value
    raise BamError(f"{source}: {key} must be {_type_name(tp)}, got {value!r}")


def _closest_key(key: str, names: Sequence[str]) -> str | None:
    """The field a mistyped key most likely meant: a near spelling, or the field whose words'
    initials it is (``lr`` → learning_rate, ``wd`` → weight_decay)."""
    close = difflib.get_close_matches(key, names, n=1)
    initials = [name for name in names if "".join(word[0] for word in name.split("_")) == key.lower()]
    return close[0] if close else initials[0] if len(initials) == 1 else None  # `t`: tasks or temperature?


@dataclass(frozen=True)
class KeyPlace:
    """The keys a user may write where a mapping stands (``bam run``'s top level, its ``teacher``
    section, a method), for "did you mean": a suggestion is always one of ``valid``, so a typo in
    ``teacher`` is never pointed to ``seed`` (which bam run sets) nor a run key to a training key.
    A key that belongs in another place is sent there (``elsewhere``: key → where to write it)."""

    valid: tuple[str, ...]
    elsewhere: dict[str, str] = field(default_factory=dict)

    def hint(self, key: str, prefix: str = "") -> str:
        if key in self.elsewhere:
            return f" (did you mean {self.elsewhere[key]}?)"
        close = _closest_key(key, self.valid)
        if close:
            return f" (did you mean {prefix}{close}?)"
        near = _closest_key(key, tuple(self.elsewhere))  # `student.task`: the run's tasks
        return f" (did you mean {self.elsewhere[near]}?)" if near else ""


def build_dataclass(
    cls: type, values: dict[str, Any], source: str, prefix: str = "", place: KeyPlace | None = None
) -> Any:
    """Make ``cls`` from a mapping, refusing unknown keys and wrong types with the key's name.
    ``place``: the keys valid where the mapping stands, for the hint (default: all of ``cls``)."""
    hints = typing.get_type_hints(cls)
    place = place or KeyPlace(tuple(f.name for f in dataclasses.fields(cls)))
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise BamError(f"{source}: unknown key {prefix}{key}{place.hint(str(key), prefix)}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise BamError(f"{source}: {prefix}{key} must be a mapping, got {value!r}")
            kwargs[key] = build_dataclass(hints[key], value, source, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except BamError as err:  # a value out of range (TrainConfig.__post_init__)
        raise BamError(f"{source}: {prefix}{err}") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a.b=1", "tasks=[rte, mrpc]"]`` → ``{"a": {"b": 1}, "tasks": ["rte", "mrpc"]}`` (YAML values)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise BamError(f"override {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = result
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise BamError(f"override {pair!r}: {parent} is not a section")
        node[leaf] = value
    return result


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BamError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise BamError(f"{path}: not UTF-8 text") from None
    except OSError as err:  # a folder, no permission, ...
        raise BamError(f"{path}: cannot read config file ({err.strerror or type(err).__name__})") from None
    try:
        data = safeyaml.load(text)  # safe_load, less aliases and oversized documents
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise BamError(f"{path}{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BamError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def load_train_config(config_file: str | None, overrides: list[str], base: dict[str, Any]) -> TrainConfig:
    """Defaults < ``base`` (CLI flags) < config file < ``key=value`` overrides."""
    values = deep_merge(dict(base), read_yaml(config_file)) if config_file else dict(base)
    source = config_file if config_file and not overrides else "command line"
    try:
        return build_dataclass(TrainConfig, deep_merge(values, parse_overrides(overrides)), source)
    except BamError:
        if config_file and overrides:  # an override may correct the file; if not, name the file
            build_dataclass(TrainConfig, values, config_file)
        raise


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config's values, less the fields whose ``keyed_when_set`` switch is off (at its default)."""
    values = dataclasses.asdict(config)
    defaults = {
        spec.name: spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()
        for spec in dataclasses.fields(config)
    }
    for spec in dataclasses.fields(config):
        switch = spec.metadata.get("keyed_when_set")
        if switch and getattr(config, switch) == defaults[switch]:
            del values[spec.name]
    return values
