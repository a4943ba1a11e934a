"""``sweep --teacher auto|RUN``: the teacher trained once (by the plain grid), the smaller groups
distilled from it, the provenance in every point, both fronts in the report, resume without
retraining; the rules and the old-file reading need no training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_folder

from edgetransfer.flows.pareto import pareto_front, students, teacher_group
from edgetransfer.records import SweepPoint, SweepResult, TargetLatency

TARGETS = ("host-cpu", "pixel4-cpu")


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["sweep", "--data", str(data), "--out", str(out), "--backbone", "efficientnet_lite0"]
    args += ["--image-size", "32", "--image-size", "48", "--precision", "fp32"]
    args += [x for t in TARGETS for x in ("--target", t)]
    return [*args, "--epochs", "2", "--budget-s", "0.1", "--json", *extra]


def _run(*args: str) -> tuple[int, str, str]:
    from edgetransfer.cli import cli

    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    data = make_folder(root / "data", {"red": 6, "blue": 6, "green": 6})
    code, out, err = _run(*_args(data, root / "out", "--teacher", "auto"))
    assert code == 0, err
    return data, root / "out", json.loads(out), err


@pytest.mark.slow
def test_teacher_auto_distils_the_smaller_group(taught):
    _, out, doc, err = taught
    res = SweepResult.read(out / "sweep.json")
    # the plain grid first (32 and 48 px), then one student: the teacher is trained once, by the grid
    assert res.stats.trained == 3 and res.stats.distilled == 1
    plain = [p for p in res.configs if not p.distilled]
    taught_points = [p for p in res.configs if p.distilled]
    assert [(p.image_size, p.precision) for p in plain] == [(32, "fp32"), (48, "fp32")]
    t = res.teacher
    assert t is not None and t.chosen == "auto" and t.backbone == "efficientnet_lite0"
    big = max(plain, key=lambda p: (p.float_accuracy, p.macs))  # the rule, on the measured points
    assert (t.image_size, t.accuracy, t.macs) == (big.image_size, big.float_accuracy, big.macs)
    assert t.run == f"runs/efficientnet_lite0-{t.image_size}"
    assert [p.image_size for p in taught_points] == [s for s in (32, 48) if s != t.image_size and t.image_size == 48]
    student = taught_points[0]
    assert student.teacher == t.run and student.name.endswith("distilled")
    assert student.macs < t.macs and student.artifact.startswith("exports/efficientnet_lite0-32-distilled/")
    # the student's run records the teacher it learnt from
    manifest = json.loads((out / "runs" / "efficientnet_lite0-32-distilled" / "manifest.json").read_text())
    assert manifest["config"]["distill"]["teacher"]["run"] == str((out / t.run).resolve())
    assert (out / "configs" / "efficientnet_lite0-32-fp32-distilled.json").exists()
    # both fronts: the plain one over the plain points only, the full one over all
    for target in TARGETS:
        assert res.plain_pareto[target] == pareto_front(plain, target)
        assert res.pareto[target] == pareto_front(res.configs, target)
    page = (out / "report.html").read_text()
    assert (
        "front on host-cpu without it (plain only)" in page
        and "teacher: efficientnet_lite0 48" in page
        and "distilled" in page
    )
    assert "distilling 1 smaller group(s) from it: efficientnet_lite0 32" in err
    assert doc["configs"][2]["teacher"] == t.run  # --json keeps the provenance


@pytest.mark.slow
def test_resume_does_not_retrain_the_teacher_or_the_student(taught):
    data, out, first, _ = taught
    teacher_model = out / "runs" / "efficientnet_lite0-48" / "model.keras"
    before = teacher_model.stat().st_mtime_ns
    code, stdout, err = _run(*_args(data, out, "--teacher", "auto"))
    assert code == 0, err
    s = json.loads(stdout)["stats"]
    assert (s["computed"], s["reused"], s["trained"], s["distilled"], s["exported"]) == (0, 3, 0, 0, 0)
    assert teacher_model.stat().st_mtime_ns == before
    assert json.loads(stdout)["configs"] == first["configs"]


@pytest.mark.slow
def test_a_given_teacher_run(taught, tmp_path):
    """``--teacher RUN``: the run's own figures in the record; only smaller groups are students."""
    data, out, _, _ = taught
    teacher = out / "runs" / "efficientnet_lite0-48"
    code, stdout, err = _run(*_args(data, out, "--teacher", str(teacher)))
    assert code == 0, err
    res = SweepResult.read(out / "sweep.json")
    assert res.teacher is not None and res.teacher.chosen == "given" and res.teacher.run == str(teacher.resolve())
    assert [p.image_size for p in res.configs if p.distilled] == [32]
    assert json.loads(stdout)["stats"]["trained"] == 0  # the same teacher model: the student is reused


def test_a_teacher_that_is_not_a_run_is_exit_2_before_training(tmp_path):
    data = make_folder(tmp_path / "data", {"red": 4, "blue": 4})
    code, _, err = _run(*_args(data, tmp_path / "out", "--teacher", str(tmp_path / "nope")))
    assert code == 2 and "manifest.json" in err
    assert not (tmp_path / "out" / "runs").exists()


def _pt(b: str, s: int, acc: float, macs: int, teacher: str = "") -> SweepPoint:
    return SweepPoint(b, s, "fp32", acc, acc, 0.0, 1, macs, {"host-cpu": TargetLatency(macs / 1e6, macs / 1e6, "measured")},
                      teacher=teacher)  # fmt: skip


def test_teacher_rule_is_the_most_accurate_group_and_students_are_smaller():
    pts = [_pt("lite0", 224, 0.95, 400), _pt("lite2", 260, 0.96, 900), _pt("lite1", 240, 0.96, 700)]
    assert teacher_group(pts) == ("lite2", 260)  # a tie on accuracy goes to the bigger model
    assert students(pts, 900) == {("lite0", 224), ("lite1", 240)}
    # distilled points are never teachers nor students again
    pts.append(_pt("lite0", 224, 0.99, 400, teacher="runs/lite2-260"))
    assert teacher_group(pts) == ("lite2", 260) and students(pts, 400) == set()
    assert teacher_group([]) is None


def test_a_sweep_json_written_before_distillation_reads(tmp_path):
    from edgetransfer.records import SweepStats, SweepTeacher

    plain, taught = _pt("lite0", 224, 0.95, 400), _pt("lite0", 224, 0.96, 400, teacher="runs/lite2-260")
    res = SweepResult(
        configs=(plain, taught),
        targets=("host-cpu",),
        pareto={"host-cpu": (1,)},
        best={"host-cpu": 1},
        closest={"host-cpu": 1},
        limits={},
        stats=SweepStats(),
        out=tmp_path,
        teacher=SweepTeacher("runs/lite2-260", "lite2", 260, 0.97, "auto", 900),
        plain_pareto={"host-cpu": (0,)},
    )
    assert SweepResult.from_json(json.loads(json.dumps(res.to_json()))) == res
    # a plain sweep writes the keys it always wrote; a file without the new keys reads as plain
    old = res.to_json()
    del old["teacher"], old["plain_pareto"], old["configs"][1]
    del old["configs"][0]["teacher"]
    old["pareto"], old["best"], old["closest"] = {"host-cpu": [0]}, {"host-cpu": 0}, {"host-cpu": 0}
    back = SweepResult.from_json(old)
    assert back.teacher is None and back.plain_pareto == {} and not back.configs[0].distilled
    assert set(back.to_json()) == set(old)


def test_pipeline_sweep_teacher_and_a_distilled_picks_pipeline(tmp_path):
    """``sweep: teacher: auto`` in a pipeline file; a distilled pick's pipeline.yaml trains from
    the same teacher run (absolute path), and reads back as a valid pipeline."""
    from edgetransfer import targets
    from edgetransfer.flows import picks
    from edgetransfer.flows.pipeline import Flow
    from edgetransfer.records import Budget, SweepStats
    from edgetransfer.training import TrainConfig

    p = tmp_path / "pipeline.yaml"
    p.write_text("data: d\nsweep:\n  backbones: [efficientnet_lite0]\n  teacher: auto\n")
    s = Flow.from_yaml(p).sweep
    assert s is not None and s.teacher == "auto"
    pt = dataclasses.replace(_pt("efficientnet_lite0", 224, 0.96, 400, teacher="runs/x"), artifact="a.tflite")
    res = SweepResult(
        configs=(pt,),
        targets=("host-cpu",),
        pareto={"host-cpu": (0,)},
        best={"host-cpu": 0},
        closest={"host-cpu": 0},
        limits={"host-cpu": Budget()},
        stats=SweepStats(),
        out=tmp_path / "sweep",
    )
    path = picks.write(res, targets.get("host-cpu"), tmp_path / "data", TrainConfig(), 10, 200)
    flow = Flow.from_yaml(path)
    assert flow.train.teacher == str((tmp_path / "sweep" / "runs" / "x").resolve())
    assert flow.train.backbone == "efficientnet_lite0" and flow.train.workflow == "features"


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_teacher_auto_on_a_parallel_executor_gives_the_local_configurations(taught, tmp_path, executor):
    """The student groups run as tasks like the plain ones (GroupJob.teacher); the same points."""
    if executor == "ray":
        pytest.importorskip("ray")
    data, _, local, _ = taught
    extra = ("--executor", executor, "--jobs", "2")
    code, stdout, err = _run(*_args(data, tmp_path / "out", "--teacher", "auto", *extra))
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["stats"]["distilled"] == 1 and doc["teacher"] == local["teacher"]
    keep = ("backbone", "image_size", "precision", "accuracy", "teacher")
    assert [{k: c[k] for k in keep} for c in doc["configs"]] == [{k: c[k] for k in keep} for c in local["configs"]]
