"""Hub reading through the real ``datasets.load_dataset`` call, on a local folder laid out like the hub repo.

The folder holds ``<config>/<split>-00000-of-00001.parquet`` files with the hub's exact schema
(``ClassLabel`` names in the hub's order, ``idx`` int32) and a README whose ``configs`` section
names them, as ``nyu-mll/glue`` does. The parquet rows are built from the official TSVs the way
the hub's GLUE builder built them (``csv.DictReader``, QUOTE_NONE, labels by ClassLabel name), not
through bam's readers, so equal fingerprints show the two paths agree.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests import helpers

datasets = pytest.importorskip("datasets")

from bam.data.hub import read_hub_split  # noqa: E402
from bam.data.load import default_data_dir, load_examples  # noqa: E402
from bam.errors import BamError  # noqa: E402
from bam.tasks import get_task  # noqa: E402
from bam.tasks.spec import TaskSpec  # noqa: E402

GLUE_MIN = helpers.FIXTURES / "glue_min"
VENDORED = default_data_dir()

# The hub's ClassLabel names (order = id), from the `glue` builder.
HUB_NAMES = {
    "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"],
    "mnli": ["entailment", "neutral", "contradiction"],
    "qqp": ["not_duplicate", "duplicate"],
}


def _hub_rows(task: TaskSpec, tsv: Path, label_names: list[str] | None) -> dict[str, list]:
    """The rows the hub builder produced from one official TSV."""
    columns: dict[str, list] = {c: [] for c in (*task.hub.text_columns, "label", "idx")}
    with open(tsv, encoding="utf8") as handle:
        for n, row in enumerate(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)):
            for hub_column, file_column in zip(task.hub.text_columns, task.text_columns, strict=True):
                columns[hub_column].append(row[file_column])
            label = row.get(task.label_column) if task.label_column else None
            if label is None:
                columns["label"].append(-1)
            elif label_names is None:
                columns["label"].append(float(label))
            else:
                columns["label"].append(label_names.index(label) if label in label_names else int(label))
            columns["idx"].append(n)
    return columns


def _make_hub(root: Path, task: TaskSpec, files: dict[str, Path]) -> TaskSpec:
    """Write ``files`` (hub split -> official TSV) as the hub's parquet; return the task pointed at it."""
    names = HUB_NAMES.get(task.name)
    features = datasets.Features(
        {
            **{c: datasets.Value("string") for c in task.hub.text_columns},
            "label": datasets.ClassLabel(names=names) if names else datasets.Value("float32"),
            "idx": datasets.Value("int32"),
        }
    )
    config = task.hub.config
    for hub_split, tsv in files.items():
        target = root / config / f"{hub_split}-00000-of-00001.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(_hub_rows(task, tsv, names), features=features).to_parquet(str(target))
    _write_readme(root)
    return dataclasses.replace(task, hub=dataclasses.replace(task.hub, dataset=str(root)))


def _write_readme(root: Path) -> None:
    """The dataset card's ``configs`` section, which tells ``load_dataset`` each config's files."""
    lines = ["---", "configs:"]
    for config in sorted(p for p in root.iterdir() if p.is_dir()):
        lines += [f"- config_name: {config.name}", "  data_files:"]
        for parquet in sorted(config.glob("*.parquet")):
            split = parquet.name.split("-")[0]
            lines += [f"  - split: {split}", f"    path: {config.name}/{split}-*"]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TaskSpec]:
    root = tmp_path_factory.mktemp("hub") / "glue"
    rte, wnli, stsb, mnli = (get_task(n) for n in ("rte", "wnli", "stsb", "mnli"))
    return {
        "rte": _make_hub(root, rte, {"train": VENDORED / "RTE/train.tsv", "test": VENDORED / "RTE/test.tsv"}),
        "wnli": _make_hub(root, wnli, {"validation": VENDORED / "WNLI/dev.tsv"}),
        "stsb": _make_hub(root, stsb, {"validation": VENDORED / "STS-B/dev.tsv"}),
        "mnli": _make_hub(
            root,
            mnli,
            {
                "validation_matched": GLUE_MIN / "MNLI/dev_matched.tsv",
                "test_matched": GLUE_MIN / "MNLI/test_matched.tsv",
            },
        ),
        "cache": root.parent / "cache",  # type: ignore[dict-item]
    }


def _read(hub: dict, name: str, split: str):
    return read_hub_split(hub[name], split, cache_dir=str(hub["cache"]))


def test_rte_train_from_hub_equals_the_file(hub: dict) -> None:
    from_hub = _read(hub, "rte", "train")
    from_file = load_examples(get_task("rte"), "train", None)
    assert len(from_hub) == 2490
    assert from_hub.fingerprint() == from_file.fingerprint()
    assert from_hub.texts == from_file.texts
    assert np.array_equal(from_hub.labels, from_file.labels) and from_hub.ids == from_file.ids
    assert from_hub.source.startswith("hub ") and "rte" in from_hub.source


def test_rte_test_split_is_unlabeled_with_file_ids(hub: dict) -> None:
    from_hub = _read(hub, "rte", "test")
    from_file = load_examples(get_task("rte"), "test", None)
    assert from_hub.labels is None and from_hub.ids == from_file.ids
    assert from_hub.fingerprint() == from_file.fingerprint()


def test_class_names_not_in_the_file_map_to_ids(hub: dict) -> None:
    # WNLI's hub names (not_entailment, entailment) are not what its files write (0, 1).
    from_hub = _read(hub, "wnli", "dev")
    from_file = load_examples(get_task("wnli"), "dev", None)
    assert from_hub.fingerprint() == from_file.fingerprint()
    assert np.array_equal(from_hub.labels, from_file.labels)


def test_nli_class_names_map_by_name_not_position(hub: dict) -> None:
    # The hub orders MNLI's classes entailment, neutral, contradiction; bam's table differently.
    task = get_task("mnli")
    from_hub = _read(hub, "mnli", "dev_matched")
    from_file = load_examples(task, "dev_matched", GLUE_MIN)
    assert from_hub.fingerprint() == from_file.fingerprint()
    assert [task.labels[i] for i in from_hub.labels] == [
        "neutral",
        "contradiction",
        "entailment",
        "contradiction",
    ]
    test = _read(hub, "mnli", "test_matched")
    assert (
        test.labels is None
        and test.fingerprint() == load_examples(task, "test_matched", GLUE_MIN).fingerprint()
    )


def test_regression_scores_equal_the_file(hub: dict) -> None:
    from_hub = _read(hub, "stsb", "dev")
    from_file = load_examples(get_task("stsb"), "dev", None)
    assert from_hub.labels.dtype == np.float32
    assert np.array_equal(from_hub.labels, from_file.labels)
    assert from_hub.fingerprint() == from_file.fingerprint()


def test_errors(hub: dict) -> None:
    with pytest.raises(BamError, match=r"hub .*glue \(rte, validation\): cannot load"):
        _read(hub, "rte", "dev")  # not in the local hub folder
    with pytest.raises(BamError, match="has no split 'dev_matched' on the hub"):
        _read(hub, "rte", "dev_matched")
    no_hub = dataclasses.replace(hub["rte"], hub=None)
    with pytest.raises(BamError, match="has no Hugging Face hub source"):
        read_hub_split(no_hub, "train")
    renamed = dataclasses.replace(
        hub["rte"], hub=dataclasses.replace(hub["rte"].hub, text_columns=("premise", "sentence2"))
    )
    with pytest.raises(BamError, match=r"missing column\(s\) 'premise'"):
        read_hub_split(renamed, "train", cache_dir=str(hub["cache"]))


@pytest.mark.parametrize("data_dir", ["hub", "HF"])
def test_load_examples_dispatches_to_the_hub(
    hub: dict, data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(hub["cache"]))
    examples = load_examples(hub["wnli"], "dev", data_dir)
    assert examples.source.startswith("hub ")
    assert examples.fingerprint() == load_examples(get_task("wnli"), "dev", None).fingerprint()


def test_hub_needs_a_hub_source() -> None:
    no_hub = dataclasses.replace(get_task("rte"), hub=None)
    with pytest.raises(BamError, match="has no Hugging Face hub source"):
        load_examples(no_hub, "train", "hub")
