"""Every config key's one-line meaning, beside the type and default its dataclass gives it.

``bam config`` lists them and ``bam config PRESET`` writes a preset as commented YAML. A key
added to :class:`TrainConfig` or :class:`RunConfig` needs one line here (a test says which one).
Types and defaults are read from the dataclasses, so they cannot drift from what is checked.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from typing import Any

import yaml

from bam.config.run import (
    METHOD_KEYS,
    STAGE_FIELDS,
    STUDENT_DEFAULTS,
    TEACHER_DEFAULTS,
    TEACHER_KEYS,
    RunConfig,
    preset_path,
)
from bam.config.train import TrainConfig, build_dataclass, deep_merge

TRAIN_DOCS = {
    "tasks": "tasks trained together: GLUE names or custom-task YAML files",
    "model": "encoder: minilm-l6 (packaged), a Hugging Face id, or a local folder",
    "random_init": "random weights from the encoder's config, no pre-training (tests, smoke)",
    "encoder_overrides": "encoder config values to change, e.g. {num_hidden_layers: 2}",
    "trust_remote_code": "run code from the model's hub repo (off unless you trust it)",
    "pooling": "sentence vector: cls, mean, or auto (mean where sentence-transformers mean-pools)",
    "data_dir": "a glue_data folder, hub (nyu-mll/glue; bam-nlu[hub]), or null: the copy in bam",
    "max_length": "tokens kept per input; longer inputs are cut",
    "train_cap": "task -> training rows kept: a fixed random subset, the same for every seed",
    "both_orders": "pair tasks also trained with their two texts swapped",
    "learning_rate": "peak learning rate (AdamW; linear warm-up, then linear decay)",
    "layerwise_decay": "lr × decay^(depth from the top) per layer; 1.0: one rate for all",
    "batch_size": "training rows per optimizer step",
    "epochs": "passes over the training rows (fractions allowed)",
    "warmup_fraction": "fraction of the steps the learning rate warms up over",
    "weight_decay": "AdamW weight decay (not on biases and layer norms)",
    "max_grad_norm": "gradients clipped to this norm",
    "dropout": "dropout probability in the encoder and heads",
    "dropout_rng": "CPU dropout masks: sfc64 (numpy, faster steps) or torch",
    "sampling_alpha": "a batch's task drawn with probability ∝ |D|^alpha (0: uniform, 1: by size)",
    "sampling_boost": "task -> w: that task drawn ∝ w·|D|^alpha, e.g. {cola: 2.0}",
    "sampling": "static: tasks drawn ∝ w·|D|^alpha; adaptive: also × g(their lag behind the targets)",
    "sampling_update_every": "adaptive: steps between share updates; 0: at each epoch's start",
    "sampling_slice": "adaptive: training rows per task (a seeded choice) the lag is measured on",
    "sampling_lag_target": "adaptive: lag behind the teacher, or annealed: behind λ·gold + (1−λ)·teacher",
    "sampling_lag_scale": "adaptive: each lag over the mean or the median lag of all tasks",
    "lambda_schedule": "λ, the weight on gold labels: linear (BAM), constant, gold, teacher",
    "lambda_constant": "λ of the constant schedule",
    "lambda_horizon": "fraction of the steps λ's schedule runs over; gold labels alone after",
    "temperature": "softmax temperature of distillation (the soft term scaled by T²)",
    "ema_decay": "evaluate and save an exponential moving average of the weights; 0: off",
    "teacher_outputs": "task -> teacher output files to distil from (bam run fills it in)",
    "init_model": "a bam model folder whose encoder and these tasks' heads training starts from",
    "eval_every": "steps between dev evaluations; 0: at each epoch's end",
    "checkpoint_every": "steps between resumable checkpoints; 0: at epoch ends only",
    "keep_best": "keep the weights of the best dev average, not the last",
    "eval_batch_size": "rows per batch when evaluating",
    "seed": "random seed of the weights of the heads, dropout and batch order",
    "num_threads": "torch intra-op threads; 0: torch's default",
    "log_with": "trackers for losses and λ, e.g. [tensorboard] (bam-nlu[tensorboard])",
    "precision": "auto, fp32, bf16 or fp16; auto: bf16 where the device has bf16 units",
    "gradient_accumulation_steps": "each batch in this many slices, one optimizer step (less memory)",
    "compile": "torch.compile the encoder (GPU runs)",
    "attention": "the encoder's attention kernel (transformers' attn_implementation: sdpa, eager)",
    "cv_folds": "split the training rows in this many folds and leave one out (0: off)",
    "cv_holdout": "the fold left out when cv_folds is set",
}
RUN_DOCS = {
    "tasks": "tasks compared: GLUE names or custom-task YAML files",
    "seeds": "run seeds; the tables show medians over them",
    "teachers_per_task": "teachers per task (seeds seed, seed+1000, ...) a student distils from",
    "train": "training settings of every stage (the keys below)",
    "teacher": "training settings of the single-task teachers",
    "student": "training settings of the multi-task students",
    "methods": "name -> training settings of one student; single: the teachers themselves",
    "description": "what the run is for: the first lines of its plan and its report",
}
METHOD_DOCS = {
    "per_task": "true: one student per task (Single→Single born-again)",
    "teacher": "whose outputs it distils from: single (the task teachers) or a method (Multi→Multi)",
    "init_from": "a method whose trained models it starts from, encoder and heads (BAM → fine-tuned)",
    "teachers": "distil from the average of this many teachers per task",
    "teacher_folds": "k: out-of-fold teacher outputs from k extra teachers per task",
}
TEACHER_DOCS = {
    "per_task": "task -> settings that task's teachers take over teacher's, e.g. {rte: {epochs: 10}}",
}
SECTION_DEFAULTS = {"teacher": TEACHER_DEFAULTS, "student": STUDENT_DEFAULTS}


def missing_docs() -> list[str]:
    """Keys without a line here, and lines for keys that no longer exist (empty: all in order)."""
    tables = [(TrainConfig, TRAIN_DOCS, "TRAIN_DOCS"), (RunConfig, RUN_DOCS, "RUN_DOCS")]
    wanted = [
        (cls.__name__, docs, table, [f.name for f in dataclasses.fields(cls)]) for cls, docs, table in tables
    ]
    wanted.append(("the methods", METHOD_DOCS, "METHOD_DOCS", list(METHOD_KEYS)))
    wanted.append(("the teacher section", TEACHER_DOCS, "TEACHER_DOCS", list(TEACHER_KEYS)))
    problems = []
    for owner, docs, table, names in wanted:
        problems += [f"{owner}.{n} has no line in {table}" for n in names if not docs.get(n, "").strip()]
        problems += [f"{table}[{n!r}] describes no key of {owner}" for n in docs if n not in names]
        problems += [f"{table}[{n!r}] is not one line" for n, text in docs.items() if "\n" in text]
    return problems


def flow(value: Any) -> str:
    """``value`` as one line of YAML (``[rte, mrpc]``, ``5.0e-05``, ``null``)."""
    return (
        yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6, sort_keys=False)
        .removesuffix("\n...\n")
        .strip()
    )


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "") if typing.get_args(tp) else getattr(tp, "__name__", str(tp))


def _default(spec: dataclasses.Field) -> Any:
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _entries(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """``key: type = default`` over its meaning, indented: fits a terminal, reads like a signature."""
    return [
        line
        for key, kind, default, meaning in rows
        for line in (f"  {key}: {kind} = {default}", f"      {meaning}")
    ]


def describe_keys() -> str:
    """Every key of ``bam run`` and ``bam train``, with its type, default and meaning."""
    run_hints, train_hints = typing.get_type_hints(RunConfig), typing.get_type_hints(TrainConfig)
    run_rows = [
        (s.name, _type_name(run_hints[s.name]), flow(_default(s)), RUN_DOCS[s.name])
        for s in dataclasses.fields(RunConfig)
    ]
    train_rows = []
    for spec in dataclasses.fields(TrainConfig):
        meaning = TRAIN_DOCS[spec.name]
        per_section = [f"{s} {flow(d[spec.name])}" for s, d in SECTION_DEFAULTS.items() if spec.name in d]
        if per_section:
            meaning += f" (bam run: {', '.join(per_section)})"
        if spec.name in STAGE_FIELDS:
            meaning += f" (bam run sets it: use {STAGE_FIELDS[spec.name]})"
        train_rows.append((spec.name, _type_name(train_hints[spec.name]), flow(_default(spec)), meaning))
    method_rows = [("per_task", "bool", "false", METHOD_DOCS["per_task"])]
    method_rows += [("teacher", "str", "single", METHOD_DOCS["teacher"])]
    method_rows += [("init_from", "str", "null (the encoder's own weights)", METHOD_DOCS["init_from"])]
    method_rows += [("teachers", "int", "the run's teachers_per_task", METHOD_DOCS["teachers"])]
    method_rows += [("teacher_folds", "int", "0", METHOD_DOCS["teacher_folds"])]
    return "\n".join(
        [
            "bam run: top-level keys (in a --config YAML file, or key=value: seeds=[1,2,3])",
            *_entries(run_rows),
            "",
            "Training keys: bam train (a --config file or key=value: epochs=2), and bam run's sections",
            "train (every stage), teacher, student and methods.<name> (student.epochs=2)",
            *_entries(train_rows),
            "",
            "Method keys: only in methods.<name> of bam run (methods.bam_ens={teachers: 2})",
            *_entries(method_rows),
            "",
            "Teacher keys: only in teacher of bam run (teacher.per_task.rte.epochs=10)",
            *_entries([("per_task", "dict[str, dict]", "{}", TEACHER_DOCS["per_task"])]),
            "",
            "bam config PRESET prints a preset with every value, as YAML to edit and run with --config.",
        ]
    )


def help_epilog(command: str) -> str:
    """The keys ``bam run --help`` / ``bam train --help`` end with; the meanings are ``bam config``'s."""
    train_keys = [s.name for s in dataclasses.fields(TrainConfig)]
    if command == "train":
        paragraphs = [f"config keys (key=value, or in a --config YAML file): {', '.join(train_keys)}."]
    else:
        run_keys = ", ".join(s.name for s in dataclasses.fields(RunConfig))
        section_keys = ", ".join(k for k in train_keys if k not in STAGE_FIELDS)
        paragraphs = [
            f"top-level keys (key=value, or in a --config YAML file): {run_keys}.",
            f"train., teacher., student. and methods.<name>. take: {section_keys}.",
            f"methods.<name>. also takes: {', '.join(METHOD_KEYS)}.",
            f"teacher. also takes: {', '.join(TEACHER_KEYS)} (one task's: teacher.per_task.rte.epochs=10).",
        ]
    paragraphs.append(
        "`bam config` gives each key's type, default and meaning; `bam config demo` prints the demo "
        "preset with every value, as YAML to edit and use with `bam run --config FILE`."
    )
    return "\n\n".join(textwrap.fill(p, width=100) for p in paragraphs)


def _stage_settings(config: RunConfig, section: str) -> dict[str, Any]:
    """Every training value of ``section``'s first stage, layered as RunConfig layers them:
    the section's defaults, then ``train``, then the section (stage-set keys left out)."""
    own = config.teacher_settings() if section == "teacher" else config.student
    values = deep_merge(deep_merge(SECTION_DEFAULTS[section], config.train), own)
    stage = {"tasks": config.tasks[:1], "seed": config.seeds[0]}
    built = build_dataclass(TrainConfig, {**values, **stage}, section)
    return {k: v for k, v in dataclasses.asdict(built).items() if k not in STAGE_FIELDS}


def _line(indent: str, key: str, value: Any, meaning: str) -> str:
    text = f"{indent}{key}: {flow(value)}"
    return f"{text:<40} # {meaning}" if meaning else text


def resolved_yaml(config: RunConfig, preset: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """``preset`` with every setting at its value, as commented YAML that ``bam run --config``
    reads back to the same stages: values the teachers and students share go under ``train``,
    the rest under ``teacher`` and ``student``; the methods as the preset gives them."""
    teacher, student = _stage_settings(config, "teacher"), _stage_settings(config, "student")
    shared = {k: v for k, v in teacher.items() if student[k] == v}
    changed = f" with {' '.join(overrides)}" if overrides else ""
    lines = [
        f"# bam run config: the {preset} preset{changed} with every setting at its value.",
        "# Edit it, then: bam run --config FILE. Each key's meaning: bam config. The preset's own notes:",
        f"# {preset_path(preset)}",
    ]
    if config.description:
        lines += [yaml.safe_dump({"description": config.description}, allow_unicode=True, width=96).strip()]
    lines += [
        _line("", key, getattr(config, key), RUN_DOCS[key]) for key in ("tasks", "seeds", "teachers_per_task")
    ]
    per_task = {key: config.teacher[key] for key in TEACHER_KEYS if config.teacher.get(key)}
    for section, values in (("train", shared), ("teacher", teacher), ("student", student)):
        own = {k: v for k, v in values.items() if section == "train" or k not in shared}
        extra = per_task if section == "teacher" else {}  # teacher.per_task, as the config gives it
        lines += [f"{f'{section}: {{}}' if not own | extra else f'{section}:':<40} # {RUN_DOCS[section]}"]
        lines += [_line("  ", key, value, TRAIN_DOCS[key]) for key, value in own.items()]
        lines += [_line("  ", key, value, TEACHER_DOCS[key]) for key, value in extra.items()]
    lines += [f"{'methods:':<40} # {RUN_DOCS['methods']}"]
    lines += [_line("  ", name, settings, "") for name, settings in config.methods.items()]
    return "\n".join(lines) + "\n"
