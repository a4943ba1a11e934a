"""``sweep --bf16`` and the pipeline file's ``validate: {tune, bf16, profile}`` flags.

One tiny sweep (Lite0 at 32 px, fp32, host-cpu + an estimated phone target) with bf16 on, shared by
the end-to-end, resume and report tests; every runtime is the real one. The bf16 tests are skipped
where ``speed.bf16_units()`` finds no AVX512-BF16/AMX on this CPU (then the sweep only notes it).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_folder

from edgetransfer import sweep, targets
from edgetransfer.errors import ConfigError
from edgetransfer.evaluation import speed
from edgetransfer.flows import picks
from edgetransfer.flows import validate as validate_flow
from edgetransfer.flows.pipeline import Flow
from edgetransfer.flows.sweep import bf16_plan
from edgetransfer.records import SweepPoint, SweepResult, SweepStats, TargetLatency, ValidateSpec
from edgetransfer.records.budget import Budget
from edgetransfer.runtime import peak
from edgetransfer.runtime import spec as runtime_spec
from edgetransfer.training import TrainConfig

NO_BF16 = "this CPU has no bf16 units (avx512_bf16 / amx_bf16 in /proc/cpuinfo): sweep --bf16 only notes it"
needs_bf16 = pytest.mark.skipif(not speed.bf16_units(), reason=NO_BF16)


def _sweep(data: Path, out: Path, bf16: bool) -> SweepResult:
    return sweep(
        data,
        backbones=["efficientnet_lite0"],
        image_sizes=[32],
        precisions=["fp32"],
        targets=["host-cpu", "pixel4-cpu"],
        out=out,
        train_config=TrainConfig(epochs=2),
        calibration_size=8,
        budget_s=0.1,
        bf16=bf16,
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-bf16")
    data = make_folder(root / "data", {"red": 6, "blue": 6})
    return data, root / "out", _sweep(data, root / "out", bf16=True)


@needs_bf16
@pytest.mark.slow  # a real sweep (Lite0 with its weights, trained); bf16 on the untrained model: test_validate_profile
def test_a_bf16_configuration_is_swept_with_its_own_figures(swept):
    data, out, res = swept
    plain, bf16 = res.configs
    assert (plain.execution, bf16.execution) == ("", "bf16")
    assert bf16.precision == "fp32" and bf16.label == "fp32 as bf16" and bf16.name.endswith("fp32 as bf16")
    assert bf16.artifact.endswith(".onnx") and plain.artifact.endswith(".tflite") and bf16.key != plain.key
    # timed on the host target only, by a runtime that has a bf16 switch; the phone is estimated for fp32 files
    assert set(bf16.latency) == {"host-cpu"} and set(plain.latency) == {"host-cpu", "pixel4-cpu"}
    assert bf16.latency["host-cpu"].runtime in speed.bf16_runtimes([bf16.latency["host-cpu"].runtime or ""])
    assert any("not on pixel4-cpu" in n for n in res.notes)
    # its accuracy is the bf16 execution's own: what validate --bf16 scores for the same file
    rep = validate_flow.validate([out / bf16.artifact], data, ["host-cpu"], budget_s=0.1,
                              options=speed.SpeedOptions(bf16=True))  # fmt: skip
    [rec] = [r for r in rep.records if r.execution == "bf16"]
    assert bf16.accuracy == pytest.approx(rec.accuracy)
    # on the host's front or dominated by the plain point, never on the phone's
    assert 1 not in res.pareto["pixel4-cpu"]
    assert set(res.pareto["host-cpu"]) <= {0, 1} and res.pareto["host-cpu"]


@needs_bf16
@pytest.mark.slow  # a real sweep (Lite0 with its weights, trained); bf16 on the untrained model: test_validate_profile
def test_the_report_and_the_file_say_bf16(swept):
    _, out, res = swept
    from edgetransfer.report import sweep as sweep_report

    head, body = sweep_report.rows(res)
    assert [r[head.index("precision")] for r in body] == ["fp32", "fp32 as bf16"]
    assert "fp32 as bf16" in (out / "report.html").read_text()
    doc = json.loads((out / "sweep.json").read_text())
    assert [c["execution"] for c in doc["configs"]] == ["", "bf16"]
    assert SweepResult.read(out / "sweep.json").configs[1].execution == "bf16"


@needs_bf16
@pytest.mark.slow  # a real sweep (Lite0 with its weights, trained); bf16 on the untrained model: test_validate_profile
def test_plain_and_bf16_sweeps_share_a_folder_without_answering_for_each_other(swept):
    data, out, first = swept
    plain = _sweep(data, out, bf16=False)  # the plain configuration is reused, the bf16 one not reported
    assert [c.execution for c in plain.configs] == [""] and plain.stats.computed == 0
    again = _sweep(data, out, bf16=True)  # the bf16 configuration was kept under its own key
    assert again.stats.computed == 0 and again.stats.reused == 2
    assert again.configs[1] == first.configs[1]


@pytest.mark.slow  # a real sweep (Lite0 with its weights, trained); bf16 on the untrained model: test_validate_profile
def test_old_sweep_files_without_execution_read(swept):
    _, out, res = swept
    doc = res.to_json()
    for c in doc["configs"]:
        c.pop("execution")
    old = SweepResult.from_json(doc)
    assert all(c.execution == "" and c.label == c.precision for c in old.configs)
    point = json.loads(next((out / "configs").glob("*-fp32.json")).read_text())
    point.pop("execution")
    assert SweepPoint.from_json(point).execution == ""


def test_bf16_notes_where_it_cannot_run():
    phone = targets.get("pixel4-cpu")
    ok, notes = bf16_plan([phone], lambda _m: None)
    assert not ok and len(notes) == 1
    assert ("pixel4-cpu) is timed on this host" in notes[0]) if speed.bf16_units() else ("no bf16 units" in notes[0])


BF16_RUNTIME = next(n for n in runtime_spec.names() if runtime_spec.get(n).bf16)


def _bf16_result(tmp_path: Path) -> SweepResult:
    lat = TargetLatency(0.5, 0.6, "measured", BF16_RUNTIME)
    point = SweepPoint("efficientnet_lite0", 32, "fp32", 0.9, 0.9, 0.0, 1000, 8_000_000, {"host-cpu": lat},
                       "exports/efficientnet_lite0-32/bf16/model_fp32.onnx", "k", execution="bf16")  # fmt: skip
    return SweepResult(
        configs=(point,), targets=("host-cpu",), pareto={"host-cpu": (0,)}, best={"host-cpu": 0},
        closest={"host-cpu": 0}, limits={"host-cpu": Budget(latency_p90_ms=5.0, accuracy_drop=1.0)},
        stats=SweepStats(), out=tmp_path,
    )  # fmt: skip


def test_a_bf16_pick_says_how_it_runs(tmp_path):
    res = _bf16_result(tmp_path)
    doc = picks.pipeline_for(res, targets.get("host-cpu"), tmp_path, TrainConfig(), 8, n_train=10)
    assert doc.export.formats == ("onnx",) and doc.export.precisions == ("fp32",)
    assert doc.validate.bf16 and doc.check is not None and doc.check.artifact == "model_fp32.onnx"
    assert doc.check.max_latency_ms is None  # check times the fp32 execution: it would judge another figure
    text = doc.to_yaml()
    hint = next(iter(runtime_spec.get(BF16_RUNTIME).bf16))
    assert "fp32 as bf16" in text and hint in text and "bf16: true" in text
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    assert Flow.from_yaml(path).validate.bf16 is True


def test_pipeline_validate_flags_round_trip_and_are_typed(tmp_path):
    p = tmp_path / "pipeline.yaml"
    p.write_text("data: d\nvalidate:\n  targets: [host-cpu]\n  tune: true\n  bf16: true\n  profile: true\n")
    v = Flow.from_yaml(p).validate
    assert (v.tune, v.bf16, v.profile) == (True, True, True)
    assert ValidateSpec.from_json(v.to_json()) == v
    assert (ValidateSpec().tune, ValidateSpec().bf16, ValidateSpec().profile) == (False, False, False)
    p.write_text("data: d\nsweep:\n  bf16: true\n")
    sweep_spec = Flow.from_yaml(p).sweep
    assert sweep_spec is not None and sweep_spec.bf16 is True
    p.write_text("data: d\nvalidate:\n  bf16: 'yes'\n")
    with pytest.raises(ConfigError, match="bf16"):
        Flow.from_yaml(p)


@pytest.mark.slow  # ~40-60 s at load 2.5: trains, exports and profiles a tiny model
def test_pipeline_flags_reach_validate(tmp_path, monkeypatch):
    """``validate: {bf16: true, profile: true}`` of a pipeline file: bf16 records and per-op profiles."""
    from edgetransfer.flows import pipeline

    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    # a fixed peak (measuring this machine's takes ~10 s per thread count; test_validate_profile does the same)
    monkeypatch.setattr(peak, "measure_peak", lambda threads, budget_s=1.0: {"fp32": 100.0, "int8": 400.0})
    data = make_folder(tmp_path / "data", {"red": 6, "blue": 6})
    p = tmp_path / "pipeline.yaml"
    p.write_text(
        f"data: {data}\nout: {tmp_path / 'out'}\ntrain:\n  backbone: efficientnet_lite0\n  image_size: 32\n"
        "  epochs: 1\n  weights: none\nexport:\n  formats: [onnx]\n  precisions: [fp32]\n"
        "validate:\n  targets: [host-cpu]\n  budget_s: 0.1\n  bf16: true\n  profile: true\n"
    )
    res = pipeline.run(replace(Flow.from_yaml(p), check=None), log=lambda _m: None)
    recs = res.report.records
    assert recs and all(r.profiles for r in recs)
    assert any(r.execution == "bf16" for r in recs) == bool(speed.bf16_runtimes(list(runtime_spec.names())))


@needs_bf16
@pytest.mark.slow  # a real sweep (Lite0 with its weights, trained); bf16 on the untrained model: test_validate_profile
def test_cli_bf16_flag(swept):
    """``sweep --bf16`` on the finished folder: nothing recomputed, the bf16 configuration in --json."""
    from click.testing import CliRunner

    from edgetransfer.cli import cli

    data, out, _ = swept
    args = ["sweep", "--data", str(data), "--out", str(out), "--backbone", "efficientnet_lite0", "--image-size", "32"]
    args += ["--precision", "fp32", "--target", "host-cpu", "--target", "pixel4-cpu", "--epochs", "2"]
    args += ["--calibration-size", "8", "--budget-s", "0.1", "--json", "--bf16"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [c.get("execution", "") for c in doc["configs"]] == ["", "bf16"] and doc["stats"]["computed"] == 0


@needs_bf16
@pytest.mark.slow  # ~60 s: a second sweep in a fresh process pool
def test_processes_executor_measures_bf16_here(swept, tmp_path):
    """With --executor processes the tasks train and export; the bf16 point is validated in the sweep's process."""
    data, _, local = swept
    res = sweep(
        data, backbones=["efficientnet_lite0"], image_sizes=[32], precisions=["fp32"],
        targets=["host-cpu", "pixel4-cpu"], out=tmp_path / "out", train_config=TrainConfig(epochs=2),
        calibration_size=8, budget_s=0.1, bf16=True, executor="processes", jobs=1,
    )  # fmt: skip
    assert [c.tag for c in res.configs] == ["fp32", "fp32-bf16"]
    plain, bf16 = res.configs
    assert set(plain.latency) == {"host-cpu", "pixel4-cpu"} and set(bf16.latency) == {"host-cpu"}
    assert bf16.accuracy == pytest.approx(local.configs[1].accuracy)
    assert bf16.latency["host-cpu"].runtime == local.configs[1].latency["host-cpu"].runtime
