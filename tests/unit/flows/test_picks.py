"""Fast, no TensorFlow: the sweep's pure rules (front, pick, excess over a Budget) and the records
of the flows (sweep point and result, grid, pipeline state, the pick's pipeline file) round-tripping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgetransfer.errors import ConfigError
from edgetransfer.flows import pareto
from edgetransfer.records import (
    Budget,
    CheckSpec,
    ExportSpec,
    Grid,
    PipelineFile,
    PipelineState,
    SweepPoint,
    SweepResult,
    SweepState,
    SweepStats,
    TargetLatency,
    ValidateSpec,
)


def _pt(acc: float, ms: float, drop: float = 0.0, size: int = 1_000_000, target: str = "t") -> SweepPoint:
    return SweepPoint("b", 32, "int8", acc, acc, drop, size, 1, {target: TargetLatency(ms, ms * 1.2, "estimated")})


PTS = [_pt(0.80, 2.0), _pt(0.90, 5.0), _pt(0.85, 6.0), _pt(0.95, 9.0), _pt(0.96, 7.0, drop=3.0)]


def test_pareto_module_is_pure():
    """It imports the standard library and records only (``import edgetransfer`` itself loads
    the runtime package for ``Classifier``, so this reads the module's own imports)."""
    import ast

    tree = ast.parse(Path(pareto.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    # records, and the gate's pick rule (itself pure: tests/test_gate_pure.py)
    assert names <= {"__future__", "collections.abc", "..", "..records", "..records.flows"}, names


def test_front_is_the_non_dominated_points_fastest_first():
    assert pareto.pareto_front(PTS, "t") == (0, 1, 4)
    assert pareto.pareto_front(PTS, "elsewhere") == ()
    tie = [_pt(0.9, 5.0), _pt(0.9, 5.0)]  # equal points do not dominate each other
    assert pareto.pareto_front(tie, "t") == (0, 1)


def test_pick_is_the_most_accurate_within_the_budget():
    assert pareto.pick(PTS, "t", Budget(latency_p90_ms=8.0, accuracy_drop=1.0)) == (1, 1)
    assert pareto.pick(PTS, "t", Budget()) == (4, 4)  # no budgets: the most accurate
    best, closest = pareto.pick(PTS, "t", Budget(latency_p90_ms=1.0))
    assert best is None and closest == 0
    assert pareto.pick(PTS, "elsewhere", Budget()) == (None, None)


def test_excess_sums_relative_overshoots():
    p = _pt(0.9, 10.0, drop=2.0, size=4_000_000)  # p90 12 ms
    assert pareto.excess(p, "t", Budget()) == 0
    assert pareto.excess(p, "t", Budget(latency_p90_ms=12.0, size_mb=4.0, accuracy_drop=2.0)) == 0
    assert pareto.excess(p, "t", Budget(latency_p90_ms=6.0)) == pytest.approx(1.0)
    assert pareto.excess(p, "t", Budget(size_mb=2.0)) == pytest.approx(1.0)
    assert pareto.excess(p, "t", Budget(accuracy_drop=0.0)) == pytest.approx(2.0)  # relative to 1 point
    both = Budget(latency_p90_ms=6.0, size_mb=2.0)
    assert pareto.excess(p, "t", both) == pytest.approx(2.0)


def test_describe_and_the_budget_merge_the_sweep_uses():
    profile = Budget(accuracy_drop=1.0, size_mb=8.0)
    cli = Budget(latency_p90_ms=8.0, size_mb=4.0)
    merged = Budget.merge(profile, cli)
    assert pareto.describe(merged) == "p90 <= 8 ms, size <= 4 MB, drop <= 1 points"
    assert pareto.describe(Budget()) == "no budgets"


def _result(tmp_path: Path) -> SweepResult:
    limits = {"t": Budget(latency_p90_ms=1.0, accuracy_drop=1.0)}
    best, closest = pareto.pick(PTS, "t", limits["t"])
    return SweepResult(
        configs=tuple(PTS),
        targets=("t",),
        pareto={"t": pareto.pareto_front(PTS, "t")},
        best={"t": best},
        closest={"t": closest},
        limits=limits,
        stats=SweepStats(configs=5, reused=5, seconds=0.3, compute_seconds=120.0),
        out=tmp_path,
        notes=("n",),
    )


def test_sweep_result_round_trip_keeps_the_old_keys(tmp_path):
    res = _result(tmp_path)
    doc = json.loads(json.dumps(res.to_json()))
    assert set(doc) == {"kind", "schema", "configs", "pareto", "best", "closest", "budgets", "pipelines", "stats",
                        "notes", "out"}  # fmt: skip
    assert doc["budgets"]["t"] == {"max_latency_ms": 1.0, "max_size_mb": None, "max_accuracy_drop": 1.0}
    back = SweepResult.from_json(doc)
    assert back == res and back.exit_code == 1
    why = pareto.failure(back)
    assert why and "no configuration meets the budget on t (p90 <= 1 ms, drop <= 1 points)" in why
    assert "closest is #0" in why


def test_old_sweep_json_without_kind_still_loads(tmp_path):
    doc = _result(tmp_path).to_json()
    del doc["kind"], doc["schema"]
    for c in doc["configs"]:
        del c["seconds"]
    del doc["stats"]["compute_seconds"]
    old = SweepResult.from_json(json.loads(json.dumps(doc)))
    assert old.targets == ("t",) and old.configs[0].seconds == 0.0


def test_sweep_records_refuse_unknown_keys_and_other_versions(tmp_path):
    doc = _result(tmp_path).to_json()
    with pytest.raises(ConfigError, match="unknown keys"):
        SweepResult.from_json({**doc, "extra": 1})
    with pytest.raises(ConfigError, match="schema 9"):
        SweepResult.from_json({**doc, "schema": 9})
    point = doc["configs"][0]
    with pytest.raises(ConfigError, match="unknown keys"):
        SweepPoint.from_json({**point, "latency": {"t": {**point["latency"]["t"], "p99_ms": 1}}})
    assert SweepPoint.from_json(point) == PTS[0]


def test_grid_and_sweep_state_round_trip():
    g = Grid({"efficientnet_lite0": (32, 48)}, ("fp16", "int8"), ("host-cpu",))
    assert Grid.from_json(json.loads(json.dumps(g.to_json()))) == g
    st = SweepState(grid=g, data="fp", train={"epochs": 2}, version="1")
    assert SweepState.from_json(json.loads(json.dumps(st.to_json()))) == st
    assert g.configs()[0] == ("efficientnet_lite0", 32, "fp16") and len(g.configs()) == 4


def test_pipeline_state_round_trip_and_the_old_file(tmp_path):
    s = PipelineState(train="a" * 64, export="b" * 64)
    assert PipelineState.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert s.to_json()["kind"] == "edgetransfer.pipeline-state"
    assert PipelineState.from_json({"train": "x"}) == PipelineState(train="x")  # written before it was a record
    with pytest.raises(ConfigError):
        PipelineState.from_json({"train": "x", "sweep": "y"})


def test_pick_pipeline_file_reads_back_field_for_field(tmp_path):
    """What the sweep writes (yaml.safe_dump of the record) is what `edgetransfer run` reads."""
    from edgetransfer.flows.pipeline import Flow

    data = tmp_path / "data dir: with 'quotes'"
    rec = PipelineFile(
        data=str(data),
        train={"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 48, "workflow": "features",
               "epochs": 2, "learning_rate": 0.001, "cut_at": "top", "policy": "crop", "seed": 0, "val_split": 0.2},
        export=ExportSpec(formats=("tflite",), precisions=("int8",), calibration_size=8),
        validate=ValidateSpec(targets=("host-cpu",), budget_s=0.1),
        check=CheckSpec(artifact="model_int8_iouint8.tflite", target="host-cpu", max_latency_ms=8.0,
                        max_accuracy_drop=None, max_size_mb=2.5),
        comment=("reproduces the pick: efficientnet_lite0 48 int8",),
    )  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(rec.to_yaml())
    assert path.read_text().startswith("# reproduces the pick")
    flow = Flow.from_yaml(path)
    assert flow.data == rec.data and flow.out == rec.out
    assert (flow.export, flow.validate, flow.check, flow.sweep) == (rec.export, rec.validate, rec.check, None)
    assert {k: getattr(flow.train, k) for k in rec.train} == rec.train


@pytest.mark.parametrize("name", ["../x", "/abs", "a\nb", "..", "", "a/b"])
def test_a_profile_name_that_is_not_a_folder_name_is_refused(tmp_path, name):
    from edgetransfer.flows import picks
    from edgetransfer.targets import TargetProfile

    t = TargetProfile(name, "d", "litert", ("tflite",), ("int8",), path=str(tmp_path / "p.yaml"))
    with pytest.raises(ConfigError, match="not a plain folder name") as info:
        picks.folder_name(t)
    assert info.value.exit_code == 2 and repr(name) in info.value.problem
    assert picks.folder_name(TargetProfile("pixel4-cpu", "d", "litert", ("tflite",), ("int8",))) == "pixel4-cpu"


def test_the_data_folder_is_checked_once_per_flow(tmp_path, monkeypatch):
    """Training, calibration and scoring each load the folder; inside a flow they share one check."""
    from conftest import make_folder

    from edgetransfer import data as data_lib

    folder = make_folder(tmp_path / "d", {"a": 3, "b": 3})
    scans: list[tuple] = []
    real = data_lib._scan

    def counting(root, *, val_split, seed, workers, follow_links):
        scans.append((root, val_split, seed))
        return real(root, val_split=val_split, seed=seed, workers=workers, follow_links=follow_links)

    monkeypatch.setattr(data_lib, "_scan", counting)
    with data_lib.checked_once():
        first = data_lib.load(folder, val_split=0.34, seed=0)
        for _ in range(3):  # e.g. train, calibrate, score: three configurations
            assert data_lib.load(str(folder), val_split=0.34, seed=0) is first
        with data_lib.checked_once():  # nested flows (the pipeline file's sweep: stage) share it
            assert data_lib.load(folder, val_split=0.34, seed=0) is first
        data_lib.load(folder, val_split=0.5, seed=0)  # another split is another scan
    assert len(scans) == 2
    data_lib.load(folder, val_split=0.34, seed=0)  # outside the block every call scans again
    assert len(scans) == 3


def test_a_target_file_in_a_pipeline_is_read_beside_the_pipeline_file(tmp_path, monkeypatch):
    """``validate.targets: [board.yaml]`` means the file beside pipeline.yaml, from any working folder."""
    import shutil

    from edgetransfer.flows.pipeline import Flow
    from edgetransfer.targets import get

    here = tmp_path / "project"
    here.mkdir()
    shutil.copy(Path(__file__).parents[3] / "targets" / "host-cpu.yaml", here / "board.yaml")
    (here / "pipeline.yaml").write_text(
        "data: images\nvalidate:\n  targets: [board.yaml, pixel4-cpu]\ncheck:\n  target: ./board.yaml\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    flow = Flow.from_yaml(here / "pipeline.yaml")
    assert flow.validate.targets == (str(here / "board.yaml"), "pixel4-cpu")
    assert flow.check is not None and Path(flow.check.target).resolve() == (here / "board.yaml").resolve()
    assert get(flow.validate.targets[0]).name == "host-cpu"
