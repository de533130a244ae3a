"""The GLUE tasks as data: files, columns, labels, metrics and hub sources.

Formats follow the official ``download_glue_data.py`` layout (``<Folder>/<split>.tsv``). Label
values are written exactly as the files write them and are mapped by name, never by position.
"""

from __future__ import annotations

from bam.tasks.spec import HubSource, SplitFile, TaskSpec

HUB = "nyu-mll/glue"
_STD_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_BINARY = ("0", "1")
_TWO_WAY_NLI = ("entailment", "not_entailment")


def _std_splits(folder: str) -> dict[str, SplitFile]:
    return {
        "train": SplitFile(f"{folder}/train.tsv"),
        "dev": SplitFile(f"{folder}/dev.tsv"),
        "test": SplitFile(f"{folder}/test.tsv", labeled=False),
    }


_COLA_COLUMNS = ("source", "label", "original_label", "sentence")

GLUE_TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in (
        TaskSpec(
            name="cola",
            display="CoLA",
            kind="classification",
            text_columns=("sentence",),
            label_column="label",
            labels=_BINARY,
            splits={
                "train": SplitFile("CoLA/train.tsv", header=False, columns=_COLA_COLUMNS),
                "dev": SplitFile("CoLA/dev.tsv", header=False, columns=_COLA_COLUMNS),
                "test": SplitFile("CoLA/test.tsv", labeled=False),
            },
            metrics=("mcc",),
            primary_metric="mcc",
            aliases=("CoLA",),
            index_column="index",
            submission_files={"test": "CoLA.tsv"},
            hub=HubSource(HUB, "cola", _STD_HUB_SPLITS, ("sentence",)),
        ),
        TaskSpec(
            name="sst2",
            display="SST-2",
            kind="classification",
            text_columns=("sentence",),
            label_column="label",
            labels=_BINARY,
            splits=_std_splits("SST-2"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            aliases=("sst-2", "sst", "SST-2", "SST2"),
            index_column="index",
            submission_files={"test": "SST-2.tsv"},
            hub=HubSource(HUB, "sst2", _STD_HUB_SPLITS, ("sentence",)),
        ),
        TaskSpec(
            name="mrpc",
            display="MRPC",
            kind="classification",
            text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            labels=_BINARY,
            splits=_std_splits("MRPC"),
            metrics=("accuracy", "f1"),
            primary_metric="accuracy",
            aliases=("MRPC",),
            index_column="index",
            submission_files={"test": "MRPC.tsv"},
            hub=HubSource(HUB, "mrpc", _STD_HUB_SPLITS, ("sentence1", "sentence2")),
        ),
        TaskSpec(
            name="stsb",
            display="STS-B",
            kind="regression",
            text_columns=("sentence1", "sentence2"),
            label_column="score",
            labels=(),
            splits=_std_splits("STS-B"),
            metrics=("pearson", "spearman"),
            primary_metric="spearman",
            aliases=("sts-b", "sts", "STS-B", "STSB"),
            index_column="index",
            submission_files={"test": "STS-B.tsv"},
            hub=HubSource(HUB, "stsb", _STD_HUB_SPLITS, ("sentence1", "sentence2")),
        ),
        TaskSpec(
            name="qqp",
            display="QQP",
            kind="classification",
            text_columns=("question1", "question2"),
            label_column="is_duplicate",
            labels=_BINARY,
            splits=_std_splits("QQP"),
            metrics=("accuracy", "f1"),
            primary_metric="accuracy",
            aliases=("QQP",),
            index_column="id",
            submission_files={"test": "QQP.tsv"},
            hub=HubSource(HUB, "qqp", _STD_HUB_SPLITS, ("question1", "question2")),
        ),
        TaskSpec(
            name="mnli",
            display="MNLI",
            kind="classification",
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            labels=("contradiction", "entailment", "neutral"),
            splits={
                "train": SplitFile("MNLI/train.tsv"),
                "dev_matched": SplitFile("MNLI/dev_matched.tsv"),
                "dev_mismatched": SplitFile("MNLI/dev_mismatched.tsv"),
                "test_matched": SplitFile("MNLI/test_matched.tsv", labeled=False),
                "test_mismatched": SplitFile("MNLI/test_mismatched.tsv", labeled=False),
            },
            metrics=("accuracy",),
            primary_metric="accuracy",
            dev_splits=("dev_matched", "dev_mismatched"),
            test_splits=("test_matched", "test_mismatched"),
            aliases=("MNLI", "mnli-m", "mnli-mm", "MNLI-m", "MNLI-mm"),
            index_column="index",
            submission_files={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
            hub=HubSource(
                HUB,
                "mnli",
                {
                    "train": "train",
                    "dev_matched": "validation_matched",
                    "dev_mismatched": "validation_mismatched",
                    "test_matched": "test_matched",
                    "test_mismatched": "test_mismatched",
                },
                ("premise", "hypothesis"),
            ),
        ),
        TaskSpec(
            name="qnli",
            display="QNLI",
            kind="classification",
            text_columns=("question", "sentence"),
            label_column="label",
            labels=_TWO_WAY_NLI,
            splits=_std_splits("QNLI"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            aliases=("QNLI",),
            index_column="index",
            submission_files={"test": "QNLI.tsv"},
            hub=HubSource(HUB, "qnli", _STD_HUB_SPLITS, ("question", "sentence")),
        ),
        TaskSpec(
            name="rte",
            display="RTE",
            kind="classification",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=_TWO_WAY_NLI,
            splits=_std_splits("RTE"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            aliases=("RTE",),
            index_column="index",
            submission_files={"test": "RTE.tsv"},
            hub=HubSource(HUB, "rte", _STD_HUB_SPLITS, ("sentence1", "sentence2")),
        ),
        TaskSpec(
            name="wnli",
            display="WNLI",
            kind="classification",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=_BINARY,
            splits=_std_splits("WNLI"),
            metrics=("accuracy",),
            primary_metric="accuracy",
            aliases=("WNLI",),
            index_column="index",
            in_bam_average=False,
            submission_files={"test": "WNLI.tsv"},
            hub=HubSource(HUB, "wnli", _STD_HUB_SPLITS, ("sentence1", "sentence2")),
        ),
        TaskSpec(
            name="ax",
            display="AX",
            kind="classification",
            text_columns=("sentence1", "sentence2"),
            label_column=None,
            labels=("contradiction", "entailment", "neutral"),
            splits={"test": SplitFile("diagnostic/diagnostic.tsv", labeled=False)},
            metrics=(),
            primary_metric="",
            dev_splits=(),
            aliases=("AX", "diagnostic"),
            index_column="index",
            head="mnli",
            in_bam_average=False,
            submission_files={"test": "AX.tsv"},
            hub=HubSource(HUB, "ax", {"test": "test"}, ("premise", "hypothesis")),
        ),
    )
}
