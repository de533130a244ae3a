"""MNLI-pool and QNLI-pool: the labelled GLUE dev rows of MNLI and QNLI, shipped with bam, as
training tasks of their own (``resources/glue-extra/``, see its MANIFEST).

MNLI's and QNLI's training sets are not available here, only their dev sets. A run may train on
those rows only if it scores on others, so these tasks cut their own splits and carry their own
names: their scores are never GLUE's MNLI or QNLI dev scores. They are not GLUE tasks (no test
split, no submission file, not in the GLUE average) but count in the BAM average, as every task a
run compares methods on does. With the official files, ``mnli`` and ``qnli`` read them unchanged.

- ``mnli-pool``: trains on MNLI dev_mismatched, scores on dev_matched (other genres: a
  cross-genre score).
- ``qnli-pool``: QNLI dev cut in two by a salted SHA-256 of the question: 4,414 rows to train,
  1,049 (20% of questions) to score, the same rows on every machine and for every seed. Grouping
  by question rather than by row keeps a question's candidate sentences on one side (as GLUE's
  own split, by SQuAD article, does); 460 scored rows still share their sentence with a training
  row, since a paragraph's sentences answer several questions.
"""

from __future__ import annotations

from importlib.resources import files

from bam.tasks.spec import HashPart, SplitFile, TaskSpec

ROOT = str(files("bam") / "resources" / "glue-extra")


def _qnli_part(held_out: bool) -> HashPart:
    """One side of QNLI-pool's fixed cut (the salt was set once, before any score was seen)."""
    return HashPart(column="question", salt="bam qnli-pool", percent=20, held_out=held_out)


POOL_TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in (
        TaskSpec(
            name="mnli-pool",
            display="MNLI-pool (dev-m)",
            kind="classification",
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            labels=("contradiction", "entailment", "neutral"),
            splits={
                "train": SplitFile("MNLI/dev_mismatched.tsv"),
                "dev": SplitFile("MNLI/dev_matched.tsv"),
            },
            metrics=("accuracy",),
            primary_metric="accuracy",
            test_splits=(),
            aliases=("mnli_pool", "MNLI-pool"),
            index_column="index",
            root=ROOT,
            expected_rows={"train": 9832, "dev": 9815},
        ),
        TaskSpec(
            name="qnli-pool",
            display="QNLI-pool (held-out)",
            kind="classification",
            text_columns=("question", "sentence"),
            label_column="label",
            labels=("entailment", "not_entailment"),
            splits={
                "train": SplitFile("QNLI/dev.tsv", part=_qnli_part(held_out=False)),
                "dev": SplitFile("QNLI/dev.tsv", part=_qnli_part(held_out=True)),
            },
            metrics=("accuracy",),
            primary_metric="accuracy",
            test_splits=(),
            aliases=("qnli_pool", "QNLI-pool"),
            index_column="index",
            root=ROOT,
            expected_rows={"train": 4414, "dev": 1049},
        ),
    )
}
