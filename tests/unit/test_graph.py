"""The stage graph of ``bam run``: every shipped preset's stages, and each role's labels and reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from bam.config.run import load_run_config
from bam.experiment.graph import Read, Reads, Role, SeedGraph, build_graph
from bam.experiment.stages import place

PRESETS = Path(__file__).resolve().parents[2] / "src" / "bam" / "config" / "presets"
# Per shipped preset: its tasks, seeds and the student methods that read teachers (all distil from
# one teacher per task, except gold-label Multi, which reads nothing); LATER: those after them.
SHIPPED = {
    "demo": (["sst2", "mrpc", "stsb"], [1], ["multi", "bam"]),
    "smoke": (["rte", "stsb"], [13], ["multi", "bam"]),
    "glue5-cpu": (["cola", "sst2", "mrpc", "stsb", "rte"], [1, 2, 3], ["multi", "bam", "bam_t2"]),
    "glue7-cpu": (
        ["cola", "sst2", "mrpc", "stsb", "rte", "mnli-pool", "qnli-pool"],
        [1, 2, 3, 4, 5],
        ["multi", "bam", "bam_cola15", "bam_adaptive", "bam_adaptive_annealed"],
    ),
    "glue-paper": (
        ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"],
        [1, 2, 3],
        ["multi", "bam"],
    ),
}
LATER = {"glue7-cpu": ["multi_multi", "bam_round2", "bam_ft"]}


def test_every_shipped_preset_is_checked_here() -> None:
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("preset", sorted(SHIPPED))
def test_a_shipped_preset_trains_one_teacher_per_task_then_its_students(preset: str) -> None:
    tasks, seeds, students = SHIPPED[preset]
    graph = build_graph(load_run_config(preset, None, []))
    assert graph.methods == ("single", *students, *LATER.get(preset, []))
    assert (graph.teachers_per_task, graph.fold_counts) == (1, ())
    assert [seed.seed for seed in graph.seeds] == seeds
    for seed in graph.seeds:
        s = seed.seed
        teachers, rest, *later = seed.waves()  # teachers, the students that read them, the rest
        assert len(seed.stages) == len(tasks) + len(students) + sum(map(len, later))
        assert {stage.method for wave in later for stage in wave} == set(LATER.get(preset, []))
        assert [t.label for t in teachers] == [f"teacher-{task}-s{s}" for task in tasks]
        assert all(
            (t.role, t.method, t.seed, t.config.seed) == (Role.TEACHER, "single", s, s) for t in teachers
        )
        assert [t.config.tasks for t in teachers] == [[task] for task in tasks]
        assert [t.title for t in teachers] == [f"teacher {task} s{s}" for task in tasks]
        assert [(r.label, r.role, r.method) for r in rest] == [
            (f"{m}-all-s{s}", Role.STUDENT, m) for m in students
        ]
        for student in rest:
            assert (student.tasks, student.config.tasks, student.seed) == (tuple(tasks), tasks, s)
            assert student.title == f"{student.method} {'+'.join(tasks)}"
            gold = student.config.lambda_schedule == "gold"
            assert gold == (student.method == "multi")
            own = {task: Reads(Read.AVERAGE, (f"teacher-{task}-s{s}",)) for task in tasks}
            assert student.reads == ({} if gold else own)


def test_glue7_trains_its_students_of_students_after_the_students_they_read() -> None:
    (seed, *_) = build_graph(load_run_config("glue7-cpu", None, [])).seeds
    (later,) = seed.waves()[2:]
    tasks = SHIPPED["glue7-cpu"][0]
    assert [(stage.label, stage.title) for stage in later] == [
        ("multi_multi-all-s1", f"multi_multi {'+'.join(tasks)} ← multi"),
        ("bam_round2-all-s1", f"bam_round2 {'+'.join(tasks)} ← bam"),
        *[(f"bam_ft-{task}-s1", f"bam_ft {task} ⇐ bam") for task in tasks],
    ]
    assert later[0].reads == {task: Reads(Read.AVERAGE, ("multi-all-s1",)) for task in tasks}
    assert later[1].reads == {task: Reads(Read.AVERAGE, ("bam-all-s1",)) for task in tasks}
    for fine_tune in later[2:]:
        assert (fine_tune.init_from, fine_tune.after, fine_tune.reads) == ("bam", ("bam-all-s1",), {})
        assert (fine_tune.config.learning_rate, fine_tune.config.lambda_schedule) == (5e-5, "gold")


def test_ensembles_folds_and_per_task_students_each_read_their_own_teachers() -> None:
    config = load_run_config(
        "smoke",
        None,
        [
            "seeds=[5]",
            "methods.ens={lambda_schedule: linear, teachers: 3}",
            "methods.oof={lambda_schedule: linear, teacher_folds: 2}",
            "methods.pt={lambda_schedule: linear, per_task: true}",
        ],
    )
    graph = build_graph(config)
    assert (graph.teachers_per_task, graph.fold_counts) == (3, (2,))
    (seed,) = graph.seeds
    by_label = {stage.label: stage for stage in seed.stages}
    teachers = [
        f"teacher-{task}-s{s}"
        for task in ("rte", "stsb")
        for s in ("5", "1005", "2005", "5-fold0of2", "5-fold1of2")
    ]
    students = ["multi-all-s5", "bam-all-s5", "ens-all-s5", "oof-all-s5", "pt-rte-s5", "pt-stsb-s5"]
    assert list(by_label) == teachers + students
    member = by_label["teacher-rte-s2005"]
    assert (member.role, member.method, member.seed, member.title) == (
        Role.MEMBER,
        None,
        2005,
        "teacher rte s2005",
    )
    fold = by_label["teacher-stsb-s5-fold1of2"]
    assert (fold.role, fold.config.cv_folds, fold.config.cv_holdout) == (Role.FOLD, 2, 1)
    assert fold.title == "teacher stsb s5 fold 1/2"
    assert by_label["teacher-rte-s5"].method == "single"
    assert by_label["bam-all-s5"].reads["rte"] == Reads(Read.AVERAGE, ("teacher-rte-s5",))
    assert by_label["ens-all-s5"].reads["stsb"] == Reads(
        Read.AVERAGE, ("teacher-stsb-s5", "teacher-stsb-s1005", "teacher-stsb-s2005")
    )
    oof = by_label["oof-all-s5"].reads
    assert oof["rte"] == Reads(Read.CROSS_FIT, ("teacher-rte-s5-fold0of2", "teacher-rte-s5-fold1of2"))
    pt = by_label["pt-stsb-s5"]
    assert (pt.tasks, pt.title, list(pt.reads)) == (("stsb",), "pt stsb", ["stsb"])
    assert [len(wave) for wave in seed.waves()] == [10, 6]


def test_only_the_teachers_a_method_reads_are_in_the_graph() -> None:
    multi_only = build_graph(load_run_config("smoke", None, ["methods.single=null", "methods.bam=null"]))
    assert [stage.label for stage in multi_only.seeds[0].stages] == ["multi-all-s13"]
    assert multi_only.seeds[0].waves() == [[], [multi_only.seeds[0].stages[0]]]
    no_single = build_graph(load_run_config("smoke", None, ["methods.single=null"]))
    teacher = no_single.seeds[0].stage("teacher-rte-s13")
    assert (teacher.role, teacher.method) == (Role.TEACHER, None)  # BAM's teacher, not a column
    teachers_only = build_graph(load_run_config("smoke", None, ["methods=null"]))
    assert [s.label for s in teachers_only.seeds[0].stages] == ["teacher-rte-s13", "teacher-stsb-s13"]


def test_a_task_by_another_name_keeps_its_own_name_in_labels_and_reads() -> None:
    config = load_run_config("smoke", None, ["tasks=[RTE, STS-B]", "methods.pt={per_task: true}"])
    seed = build_graph(config).seeds[0]
    assert [stage.label for stage in seed.stages] == [
        "teacher-rte-s13",
        "teacher-stsb-s13",
        "multi-all-s13",
        "bam-all-s13",
        "pt-rte-s13",
        "pt-stsb-s13",
    ]
    bam = seed.stage("bam-all-s13")
    assert (bam.tasks, bam.title, list(bam.reads)) == (("rte", "stsb"), "bam RTE+STS-B", ["rte", "stsb"])
    assert seed.stage("teacher-stsb-s13").title == "teacher STS-B s13"  # as the run config spells it


def test_a_custom_task_is_labelled_by_its_name_and_trained_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(8)))
    spec = tmp_path / "task.yaml"
    spec.write_text(
        "name: reviews\nformat: tsv\nfiles: {train: train.tsv, dev: train.tsv}\ntext_columns: text\n"
        "label_column: label\nlabels: ['0', '1']\n"
    )
    seed = build_graph(load_run_config("smoke", None, [f"tasks=[rte, {spec}]"])).seeds[0]
    teacher = seed.stage("teacher-reviews-s13")
    assert (teacher.tasks, teacher.config.tasks) == (("reviews",), [str(spec)])
    bam = seed.stage("bam-all-s13")
    assert (bam.tasks, list(bam.reads)) == (("rte", "reviews"), ["rte", "reviews"])
    assert bam.reads["reviews"] == Reads(Read.AVERAGE, ("teacher-reviews-s13",))


def test_per_task_teacher_settings_change_that_task_s_teachers_and_their_keys_only(tmp_path: Path) -> None:
    overrides = ["methods.ens={lambda_schedule: linear, teachers: 2}"]
    before = build_graph(load_run_config("smoke", None, overrides)).seeds[0]
    longer = load_run_config("smoke", None, [*overrides, "teacher.per_task.rte.epochs=10"])
    after = build_graph(longer).seeds[0]
    assert [s.label for s in before.stages] == [s.label for s in after.stages]
    changed = [s.label for s, t in zip(before.stages, after.stages, strict=True) if s.config != t.config]
    assert changed == ["teacher-rte-s13", "teacher-rte-s1013"]  # Single's teacher and the ensemble member
    assert after.stage("teacher-rte-s1013").config.epochs == 10.0

    def folders(seed: SeedGraph) -> list[str]:
        return [place(s, tmp_path, {}, record=False)[0].name for s in seed.stages if s.role.is_teacher]

    moved = set(folders(before)) ^ set(folders(after))
    labels = sorted(name.rsplit("-", 1)[0] for name in moved)  # each teacher's folder before and after
    assert labels == ["teacher-rte-s1013"] * 2 + ["teacher-rte-s13"] * 2


def test_a_method_taught_by_another_method_reads_its_students_after_them() -> None:
    config = load_run_config(
        "smoke",
        None,
        [
            "methods.round3={lambda_schedule: linear, teacher: pt}",  # listed before its teacher
            "methods.multi_multi={lambda_schedule: linear, teacher: multi}",
            "methods.pt={lambda_schedule: linear, per_task: true, teacher: bam}",
            "methods.born_again={lambda_schedule: linear, per_task: true, teacher: single}",
        ],
    )
    graph = build_graph(config)
    assert graph.methods == ("single", "multi", "bam", "round3", "multi_multi", "pt", "born_again")
    assert graph.teachers_per_task == 1
    teachers, students, round2, round3 = graph.seeds[0].waves()
    assert [s.label for s in teachers] == ["teacher-rte-s13", "teacher-stsb-s13"]
    assert [s.label for s in students] == [
        "multi-all-s13",
        "bam-all-s13",
        "born_again-rte-s13",
        "born_again-stsb-s13",
    ]
    assert [(s.label, s.title, dict(s.reads)) for s in round2] == [
        (
            "multi_multi-all-s13",
            "multi_multi rte+stsb ← multi",
            {task: Reads(Read.AVERAGE, ("multi-all-s13",)) for task in ("rte", "stsb")},
        ),
        ("pt-rte-s13", "pt rte ← bam", {"rte": Reads(Read.AVERAGE, ("bam-all-s13",))}),
        ("pt-stsb-s13", "pt stsb ← bam", {"stsb": Reads(Read.AVERAGE, ("bam-all-s13",))}),
    ]
    (third,) = round3
    assert third.reads == {t: Reads(Read.AVERAGE, (f"pt-{t}-s13",)) for t in ("rte", "stsb")}
    assert (third.role, third.method, third.taught_by) == (Role.STUDENT, "round3", "pt")
    # Every stage after the stages it reads, in the order bam run trains them.
    order = [s.label for s in graph.seeds[0].stages]
    for stage in graph.seeds[0].stages:
        for reads in stage.reads.values():
            assert all(order.index(label) < order.index(stage.label) for label in reads.stages)
    born_again = graph.seeds[0].stage("born_again-rte-s13")
    assert (born_again.taught_by, born_again.reads["rte"].stages) == (None, ("teacher-rte-s13",))
