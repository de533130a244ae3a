from __future__ import annotations

import re

import pytest
import yaml

from bam.config.run import load_run_config, preset_path
from bam.config.train import TrainConfig, load_train_config, parse_overrides
from bam.errors import BamError
from bam.experiment.graph import build_graph


def test_overrides_parse_yaml_values_and_nested_keys() -> None:
    assert parse_overrides(["a.b=1", "tasks=[rte, mrpc]", "x=1e-4", "name=hi"]) == {
        "a": {"b": 1},
        "tasks": ["rte", "mrpc"],
        "x": "1e-4",
        "name": "hi",
    }


def test_train_config_layers_file_then_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 2.0e-5\nbatch_size: 16\ntrain_cap: {rte: 100}\n")
    config = load_train_config(str(path), ["batch_size=8", "learning_rate=1e-4"], {"tasks": ["mrpc"]})
    assert config.batch_size == 8
    assert config.learning_rate == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; accepted
    assert config.train_cap == {"rte": 100}
    assert config.tasks == ["mrpc"]
    assert config.epochs == TrainConfig().epochs


def test_a_mistake_is_blamed_on_its_source_and_an_override_may_correct_the_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: x\n")
    assert load_train_config(str(path), ["epochs=2"], {}).epochs == 2.0
    with pytest.raises(BamError, match=rf"^{re.escape(str(path))}: epochs must be float"):
        load_train_config(str(path), ["batch_size=4"], {})
    path.write_text("epochs: 2\n")
    with pytest.raises(BamError, match=r"^command line: batch_size must be int"):
        load_train_config(str(path), ["batch_size=x"], {})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("learnin_rate=1", "unknown key learnin_rate (did you mean learning_rate?)"),
        ("lr=1", "unknown key lr (did you mean learning_rate?)"),
        ("wd=0.1", "unknown key wd (did you mean weight_decay?)"),
        ("batch_size=1.5", "batch_size must be int"),
        ("batch_size=abc", "batch_size must be int"),
        ("random_init=maybe", "random_init must be bool"),
        ("train_cap.rte=x", "train_cap.rte must be int"),
    ],
)
def test_bad_keys_and_types_are_refused_by_name(override: str, message: str) -> None:
    with pytest.raises(BamError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_train_config(None, [override], {})


def test_run_config_presets_validate_and_layer() -> None:
    config = load_run_config(
        "smoke", None, ["student.epochs=1", "methods.bam_const={lambda_schedule: constant}"]
    )
    assert config.student_config("bam", config.tasks, 1).lambda_schedule == "linear"
    assert config.student_config("bam_const", config.tasks, 1).lambda_schedule == "constant"
    assert config.student_config("multi", config.tasks, 1).epochs == 1.0
    teacher = config.teacher_config("rte", 7)
    assert (teacher.tasks, teacher.seed, teacher.random_init) == (["rte"], 7, True)


def test_run_config_refuses_typos_in_any_section() -> None:
    with pytest.raises(BamError, match=r"^student: unknown key learning_rat \(did you mean learning_rate"):
        load_run_config("smoke", None, ["student.learning_rat=1"])
    with pytest.raises(BamError, match="unknown key sed"):
        load_run_config("smoke", None, ["sed=[1]"])
    with pytest.raises(BamError, match="unknown preset 'nope'"):
        load_run_config("nope", None, [])
    with pytest.raises(BamError, match="unknown preset ''"):  # it ran the demo
        load_run_config("", None, [])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lr=1"], "train: unknown key lr (did you mean learning_rate?)"),
        (["train.max_length=1"], "train: max_length must be at least 2"),
        (["teacher.epochs=0"], "teacher: epochs must be a positive number"),
        (["student.dropout=1"], "student: dropout must be in"),
        (["methods.bam.lr=1"], "methods.bam: unknown key lr"),
        (["methods=null", "student.lr=1"], "student: unknown key lr"),  # read by no method: still a typo
    ],
)
def test_run_config_names_the_section_that_holds_a_bad_key(overrides: list[str], message: str) -> None:
    with pytest.raises(BamError, match="^" + re.escape(message)):
        load_run_config("smoke", None, overrides)


def test_run_config_counts_teachers_per_method() -> None:
    config = load_run_config("smoke", None, ["methods.ens={lambda_schedule: linear, teachers: 3}"])
    teachers = (config.method("bam").teachers, config.method("ens").teachers)
    assert (*teachers, build_graph(config).teachers_per_task) == (1, 3, 3)
    assert config.student_config("ens", config.tasks, 1).lambda_schedule == "linear"
    for bad in ("0", "1.5", "true"):
        with pytest.raises(BamError, match=r"methods\.ens\.teachers must be a whole number"):
            load_run_config("smoke", None, [f"methods.ens={{lambda_schedule: linear, teachers: {bad}}}"])


def test_run_config_methods_null_means_teachers_only_reported_as_single() -> None:
    config = load_run_config("smoke", None, ["methods=null", "train.dropout_rng=torch"])
    assert config.methods == {"single": {}} and build_graph(config).teachers_per_task == 1
    assert config.teacher_config("rte", 1).dropout_rng == "torch"


def test_run_config_method_set_to_null_is_dropped_from_the_preset() -> None:
    config = load_run_config("glue5-cpu", None, ["methods.bam_t2=null"])
    assert list(config.methods) == ["single", "multi", "bam"]
    with pytest.raises(BamError, match="every method was removed"):
        load_run_config("smoke", None, [f"methods.{name}=null" for name in ("single", "multi", "bam")])


def test_every_commented_ablation_of_the_glue5_preset_is_one_valid_line() -> None:
    """The preset promises each ablation one config line away: uncommented, each must validate."""
    text = preset_path("glue5-cpu").read_text(encoding="utf-8")
    lines = re.findall(r"^  # (\w+): (\{.*?\})\s*(?:#.*)?$", text, flags=re.MULTILINE)
    assert len(lines) >= 10
    for name, settings in lines:
        config = load_run_config("glue5-cpu", None, [f"methods.{name}={settings}"])
        assert config.methods[name] == yaml.safe_load(settings)
        if not config.method(name).per_task:
            config.student_config(name, config.tasks, config.seeds[0])  # a strict TrainConfig
