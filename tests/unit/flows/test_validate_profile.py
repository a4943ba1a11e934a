"""validate --profile / --tune / --bf16 and check --settings-from, end to end on the tiny untrained run.

The runner target's device is the stand-in adb + benchmark_model of tests/standins (no phone is
reachable here); every host runtime is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgetransfer import report as report_lib
from edgetransfer import targets
from edgetransfer.errors import ConfigError
from edgetransfer.evaluation import speed
from edgetransfer.records.measure import ValidationReport
from edgetransfer.runtime import peak
from edgetransfer.runtime import spec as runtime_spec

REPO = Path(__file__).resolve().parents[3]
PEAK = {"fp32": 100.0, "int8": 400.0}


@pytest.fixture(scope="module")
def peak_cache(tmp_path_factory):
    """A fixed peak in a private cache: measuring the real one takes ~10 s per thread count."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGETRANSFER_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setattr(peak, "measure_peak", lambda threads, budget_s=1.0: dict(PEAK))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def tuned(peak_cache, untrained_exports, tmp_path_factory):
    """``validate --profile --tune`` of the fp32 ONNX and int8 TFLite files on host-cpu: (json doc, folder)."""
    from click.testing import CliRunner

    from edgetransfer.cli import cli

    out = tmp_path_factory.mktemp("tuned")
    files = [untrained_exports[("onnx", "fp32")].path, untrained_exports[("tflite", "int8")].path]
    args = [*map(str, files), "--target", "host-cpu", "--budget-s", "0.3", "--profile", "--tune"]
    args += ["--tune-budget-s", "0.3", "--report", str(out / "r.html"), "--json"]
    res = CliRunner().invoke(cli, ["validate", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    report_lib.write(ValidationReport.from_json(json.loads(res.stdout)), out / "r.json")
    return json.loads(res.stdout), out


def _record(doc, suffix):
    return next(r for r in doc["records"] if r["artifact"].endswith(suffix))


def test_profiles_are_in_the_report_and_round_trip(tuned):
    doc, out = tuned
    onnx = _record(doc, ".onnx")
    ran = list(onnx["latency"]["detail"]["runtimes"])
    assert [p["runtime"] for p in onnx["profiles"]] == ran  # one profile per runtime measured
    for p in onnx["profiles"]:  # ONNX Runtime and OpenVINO both give per-op times, joined to the graph
        assert p["kind"] == "edgetransfer.op_profile" and p["supported"] and p["ops"] and p["by_type"]
        assert sum(o["macs"] for o in p["ops"]) > 0 and any(o["peak_share"] for o in p["ops"])
        assert p["peaks"] == PEAK and p["settings"] == {
            k: v for k, v in onnx["tuning"][p["runtime"]]["settings"].items() if k != "threads"
        }
        lost = [o["time_ms"] * (1 - min(1, o["peak_share"])) if o["peak_share"] else o["time_ms"] for o in p["ops"]]
        assert lost == sorted(lost, reverse=True)  # worst first
    litert = _record(doc, ".tflite")["profiles"]
    assert len(litert) == 1 and not litert[0]["supported"] and "no op profiler" in litert[0]["reason"]
    rep = ValidationReport.from_json(doc)
    assert json.loads(json.dumps(rep.to_json())) == doc
    assert ValidationReport.read(out / "r.json") == rep


def test_tuned_settings_are_recorded_with_the_figure(tuned):
    doc, _ = tuned
    for r in doc["records"]:
        rt = r["runtime"]
        assert r["settings"] == r["tuning"][rt]["settings"] and "threads" in r["settings"]
        assert r["latency"]["threads"] == r["settings"]["threads"]
        cands = [dict(c) for c in runtime_spec.get(rt).tune_candidates]
        # the winner is a candidate or the default (always among the trials, so the gain is known)
        assert {k: v for k, v in r["settings"].items() if k != "threads"} in [
            *cands,
            runtime_spec.get(rt).default_settings,
        ]
        assert r["tuning"][rt]["trials"] >= len(cands) * len(speed.thread_candidates(targets.get("host-cpu")))
    best = doc["best"]["host-cpu"]
    picked = next(r for r in doc["records"] if r["artifact"] == best["artifact"])
    assert best["settings"] == picked["settings"]


def test_html_and_text_show_where_the_milliseconds_go(tuned):
    doc, out = tuned
    page = (out / "r.html").read_text()
    assert "Where the milliseconds go" in page and page.count("class='optype'") >= 3
    assert "class='topops'" in page and "no op profiler" in page
    lines = "\n".join(report_lib.speed_lines(ValidationReport.from_json(doc)))
    assert (
        "profile: model_fp32.onnx (fp32) on host-cpu" in lines
        and "tuned model_int8_iouint8.tflite on host-cpu, litert" in lines
        and "by type:" in lines
    )


def test_check_reuses_the_tuned_settings(tuned, invoke, untrained_exports, monkeypatch):
    doc, out = tuned
    art = untrained_exports[("onnx", "fp32")]
    rec = _record(doc, ".onnx")
    rt = runtime_spec.get(rec["runtime"]).runtime()
    calls = []
    real = type(rt).load

    def spy(self, path, threads=None, settings=None):
        calls.append((threads, settings))
        return real(self, path, threads, settings)

    monkeypatch.setattr(type(rt), "load", spy)
    code, stdout, err = invoke(
        "check", art.path, "--target", "host-cpu", "--settings-from", out / "r.json", "--max-latency-ms", "10000",
        "--repeats", "3", "--max-repeats", "3", "--budget-s", "0.1", "--profile", "--json",
    )  # fmt: skip
    assert code == 0, err
    own = {k: v for k, v in rec["settings"].items() if k != "threads"}
    # every timed load has the recorded threads and settings (the accuracy score loads with the defaults)
    timed = [c for c in calls if c != (None, None)]
    assert len(timed) == 3 and all(c == (rec["settings"]["threads"], own) for c in timed)
    verdict = json.loads(stdout)
    assert verdict["settings"] == rec["settings"]
    (prof,) = verdict["profiles"]  # check --profile: the checked runtime's ops, with the same settings
    assert prof["runtime"] == rec["runtime"] and prof["settings"] == own and prof["supported"] and prof["ops"]
    code, stdout, _ = invoke(
        "check", "--from-report", out / "r.json", art.path.name, "--max-latency-ms", "10000", "--json"
    )
    assert code == 0 and json.loads(stdout)["settings"] == rec["settings"]
    other = untrained_exports[("onnx", "int8")].path  # not in the report: refused, naming the fix
    code, _, err = invoke("check", other, "--settings-from", out / "r.json", "--max-latency-ms", "10000")
    assert code == 2 and "recorded no runtime settings" in err and "--tune" in err


def test_validate_settings_from_reproduces(tuned, untrained_exports):
    from edgetransfer.flows.validate import validate

    doc, out = tuned
    art = untrained_exports[("onnx", "fp32")]
    opts = speed.SpeedOptions(pinned=speed.pinned_settings(out / "r.json"))
    rep = validate([art.path], None, ["host-cpu"], budget_s=0.2, options=opts)
    rec = _record(doc, ".onnx")
    (m,) = rep.records
    assert m.settings == rec["settings"] and m.runtime == rec["runtime"] and not m.profiles and not m.tuning
    assert list(m.latency.detail["runtimes"]) == [rec["runtime"]]  # only the recorded runtime, as recorded


@pytest.mark.skipif(not speed.bf16_units(), reason="this CPU has no bf16 units")
def test_bf16_execution_measured_and_labelled(peak_cache, untrained_exports, tmp_path):
    pytest.importorskip("openvino")
    from edgetransfer.flows.validate import validate

    art = untrained_exports[("onnx", "fp32")]
    rep = validate([art.path], None, ["host-cpu"], budget_s=0.2, options=speed.SpeedOptions(bf16=True))
    plain, bf16 = rep.records
    assert not plain.execution and bf16.execution == "bf16" and bf16.label == "fp32 as bf16"
    assert bf16.runtime in speed.bf16_runtimes([bf16.runtime]) and bf16.settings == runtime_spec.get(bf16.runtime).bf16
    assert bf16.accuracy is not None and bf16.latency is not None and bf16.latency.p50 > 0
    header, rows = report_lib.table(rep)
    assert [r[header.index("precision")] for r in rows] == ["fp32", "fp32 as bf16"]
    # check --from-report judges the file as deployed by default, not its bf16 candidate
    from edgetransfer import gate

    verdicts = gate.from_report(rep, targets.get("host-cpu"), (None,))
    assert len(verdicts) == 1 and verdicts[0].settings == {}


def test_runner_profile_is_the_devices_op_table(device, invoke, untrained_exports, tmp_path):
    from edgetransfer.exporter.formats import graphops

    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "phone.yaml").write_text(
        "name: phone\ndescription: an Android phone over adb\nruntime: litert\nformats: [tflite]\n"
        "precisions: [fp32, int8]\nmeasure: runner\nthreads: 1\n"
        "runner: {kind: adb, benchmark_model: /data/local/bin/benchmark_model, timeout_s: 120}\nsources: [stand-in]\n"
    )
    art = untrained_exports[("tflite", "int8")].path
    code, out, err = invoke(
        "validate", art, "--target", "phone", "--targets-dir", folder, "--budget-s", "0.1", "--profile", "--json"
    )
    assert code == 0, err
    (rec,) = json.loads(out)["records"]
    (prof,) = rec["profiles"]
    assert prof["supported"] and prof["source"] == "benchmark_model --enable_op_profiling=true"
    ops = graphops.ops_for(art)
    # every builtin op of the file has its row, joined by node index: types and MACs are the graph's
    assert len(prof["ops"]) == len(ops) and sum(o["macs"] for o in prof["ops"]) == sum(op.macs for op in ops) > 0
    assert all(o["kind"] for o in prof["ops"]) and prof["peaks"] == {}  # a device's peak is not this host's
    assert not list((device / "data/local/tmp").iterdir())  # the copy is gone again


@pytest.mark.parametrize("name", [n for n in runtime_spec.names() if runtime_spec.get(n).tune_candidates])
def test_every_candidate_setting_loads(name, untrained_exports):
    """The registry's candidates (and bf16 switch) are settings the runtime's own load() takes."""
    from edgetransfer.exporter import formats

    spec = runtime_spec.get(name)
    if not spec.installed():
        pytest.skip(f"{name} is not installed here")
    assert spec.profiler is not None and callable(spec.profiler)
    art = next(
        a for (fmt, prec), a in untrained_exports.items() if prec == "fp32" and name in formats.get(fmt).runtimes
    )
    for settings in (*spec.tune_candidates, spec.default_settings, *([spec.bf16] if spec.bf16 else [])):
        session = spec.runtime().load(art.path, 1, dict(settings))
        assert session.run(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="not ones it takes"):
        spec.runtime().load(art.path, 1, {"no_such_setting": 1})


def test_a_report_from_before_profiles_still_reads(tuned):
    doc, _ = tuned
    old = json.loads(json.dumps(doc))
    for r in old["records"]:
        for key in ("settings", "execution", "profiles", "tuning"):
            del r[key]
    for b in old["best"].values():
        del b["execution"], b["settings"]
    rep = ValidationReport.from_json(old)
    assert all(not m.profiles and not m.settings and m.label == m.precision for m in rep.records)
    assert report_lib.speed_lines(rep) == [] and "Where the milliseconds go" not in report_lib.html_section(rep)
