"""Device results as input (#39): `check/validate --device-result` read a benchmark tool's output measured
elsewhere into a measured Measurement naming the device, judged by the same gate. The LiteRT JSON is
produced here by LiteRT's own tool (ai_edge_litert.tools.benchmark_litert_model, in the wheel); the
benchmark_model log by the stand-in of tests/standins (its format, this machine's figures); the
onnxruntime_perf_test output is written in that tool's format (performance_runner.cc), as no build of it is here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STANDINS

from edgetransfer.errors import DataError
from edgetransfer.evaluation import device_results

PHONE = "Pixel 8 (device farm)"


def _profile(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "phone.yaml").write_text(
        "name: phone\ndescription: a phone whose results come from a farm\nruntime: litert\n"
        "formats: [tflite, onnx]\nprecisions: [fp32, int8]\nmeasure: host\nthreads: 1\nsources: [stand-in]\n"
    )
    return folder


def litert_result(model: Path, out: Path) -> Path:
    """A real benchmark_litert_model --result_json of ``model`` on this machine (CPU accelerator)."""
    pytest.importorskip("ai_edge_litert.tools.benchmark_litert_model")
    args = ["--model", str(model), "--num_runs", "20", "--warmup_runs", "2", "--result_json", str(out)]
    res = subprocess.run(
        [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0 and out.is_file(), res.stderr[-2000:]
    return out


@pytest.fixture
def int8(untrained_exports):
    return untrained_exports[("tflite", "int8")]


@pytest.fixture
def litert_json(int8, tmp_path):
    return litert_result(int8.path, tmp_path / "result.json")


def _check(invoke, art, result, tmp_path, *extra):
    d = _profile(tmp_path / "profiles")
    args = ["check", art, "--target", "phone", "--targets-dir", d, "--device-result", result]
    return invoke(*args, "--device-name", PHONE, *extra)


def test_check_judges_a_litert_result_and_junit_names_the_device(invoke, int8, litert_json, tmp_path):
    doc = json.loads(litert_json.read_text())
    p95 = doc["latency"]["p95_ms"]
    junit = tmp_path / "check.xml"
    code, out, err = _check(
        invoke, int8.path, litert_json, tmp_path, "--max-latency-ms", str(p95 * 10 + 1), "--junit", junit, "--json"
    )
    assert code == 0, err
    chk = json.loads(out)["checks"][0]
    assert chk["provenance"] == "measured" and chk["figure"] == pytest.approx(p95, abs=1e-3)
    assert PHONE in chk["message"] and "as reported by" in chk["message"] and "p95" in chk["message"]
    assert PHONE in junit.read_text() and 'failures="0"' in junit.read_text()
    code, out, err = _check(
        invoke, int8.path, litert_json, tmp_path, "--max-latency-ms", str(p95 / 10), "--junit", junit
    )
    assert code == 1, err
    assert PHONE in junit.read_text() and 'failures="1"' in junit.read_text()


def test_a_result_of_another_model_is_exit_2(invoke, untrained_exports, int8, tmp_path):
    other = litert_result(untrained_exports[("tflite", "fp32")].path, tmp_path / "fp32.json")
    code, _, err = _check(invoke, int8.path, other, tmp_path, "--max-latency-ms", "1000")
    assert code == 2 and "model_fp32.tflite" in err and int8.path.name in err and str(other) in err
    # same name, another size: a file of the same name measured, not this one
    doc = json.loads(other.read_text())
    doc["model"] = str(int8.path)
    doc["model_size_mb"] = round(int8.size_bytes / 2**20 + 0.5, 2)
    (tmp_path / "renamed.json").write_text(json.dumps(doc))
    code, _, err = _check(invoke, int8.path, tmp_path / "renamed.json", tmp_path, "--max-latency-ms", "1000")
    assert code == 2 and "another file of the same name" in err


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d["latency"].pop("p95_ms"), ["'latency.p95_ms' is missing"]),
        (lambda d: d["latency"].__setitem__("median_ms", "fast"), ["'latency.median_ms'", "'fast'"]),
        (lambda d: d["latency"].__setitem__("avg_ms", -1), ["'latency.avg_ms' is -1"]),
        (lambda d: d["latency"].__setitem__("num_runs", 0), ["nothing was timed"]),
        (lambda d: d.__setitem__("fully_accelerated", "yes"), ["'fully_accelerated'"]),
        (lambda d: d.__setitem__("model", 7), ["'model'"]),
    ],
)
def test_a_damaged_result_names_the_file_and_key(int8, litert_json, tmp_path, edit, words):
    doc = json.loads(litert_json.read_text())
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError) as exc:
        device_results.read(bad)
    assert str(bad) in str(exc.value) and all(w in str(exc.value) for w in words)


@pytest.mark.parametrize("text", ["{not json", "hello\n", "\x00\x01"])
def test_garbage_is_exit_2_naming_the_file(invoke, int8, tmp_path, text):
    bad = tmp_path / "r.txt"
    bad.write_text(text)
    code, _, err = _check(invoke, int8.path, bad, tmp_path, "--max-latency-ms", "1000")
    assert code == 2 and str(bad) in err


def test_benchmark_model_log_with_op_profile(device, int8, tmp_path):
    """The stand-in benchmark_model (the tool's log format, this machine's figures) with its op profiler."""
    shutil.copy(int8.path, device / "data/local/tmp" / int8.path.name)
    res = subprocess.run(
        [
            sys.executable,
            str(STANDINS / "benchmark_model"),
            f"--graph={device / 'data/local/tmp' / int8.path.name}",
            "--num_threads=1",
            "--enable_op_profiling=true",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    log = tmp_path / "bm.log"
    log.write_text(res.stdout + res.stderr)
    r = device_results.read(log, "Pixel 8")
    assert r.tool == "benchmark_model" and r.model.endswith(int8.path.name) and r.latency.runs > 0
    device_results.require_same_model(r, int8.path, int8.size_bytes)  # name and size (1e6 MB, 6 digits) match
    with pytest.raises(DataError, match="another file of the same name"):
        device_results.require_same_model(r, int8.path, int8.size_bytes + 500)
    assert r.op_profile and all(ms >= 0 and 0 <= pct <= 100 for _, ms, pct in r.op_profile)


PERF_TEST = """Session creation time cost: 0.0213 s
First inference time cost: 1 ms
Total inference time cost: 0.912 s
Total inference requests: 400
Average inference time cost: 2.28 ms
Total inference run time: 0.915 s
Number of inferences per second: 437.2
Avg CPU usage: 97 %
Peak working set size: 41943040 bytes
Min Latency: 0.0019 s
Max Latency: 0.0061 s
P50 Latency: 0.0022 s
P90 Latency: 0.0026 s
P95 Latency: 0.0029 s
P99 Latency: 0.0041 s
P999 Latency: 0.0061 s
"""


def test_onnxruntime_perf_test_output(invoke, untrained_exports, tmp_path, caplog):
    path = tmp_path / "perf.txt"
    path.write_text(PERF_TEST)
    r = device_results.read(path, "Jetson")
    assert (r.latency.p50, r.latency.p90, r.latency.p99, r.latency.mean, r.latency.runs) == (2.2, 2.6, 4.1, 2.28, 400)
    assert r.latency.load_ms == 21.3 and r.latency.peak_memory_mb == 40.0 and r.model == ""
    onnx = untrained_exports[("onnx", "int8")]
    code, out, err = _check(invoke, onnx.path, path, tmp_path, "--max-latency-ms", "2", "--json")
    assert code == 1 and "names no model file" in (err + caplog.text)
    path.write_text(PERF_TEST.replace("Total inference requests: 400", "Total inference requests: many"))
    with pytest.raises(DataError, match="Total inference requests"):
        device_results.read(path)


def test_validate_takes_the_device_result_for_the_file_it_names(
    invoke, untrained_exports, int8, litert_json, tmp_path
):
    d = _profile(tmp_path / "profiles")
    fp32 = untrained_exports[("tflite", "fp32")].path
    code, out, err = invoke(
        "validate", int8.path, fp32, "--target", "phone", "--targets-dir", d, "--budget-s", "0.2",
        "--device-result", litert_json, "--device-name", PHONE, "--json",
    )  # fmt: skip
    assert code == 0, err
    recs = {Path(m["artifact"]).name: m for m in json.loads(out)["records"]}
    assert recs[int8.path.name]["latency"]["host"]["device"] == PHONE
    assert recs[int8.path.name]["latency"]["detail"]["source"] == "benchmark_litert_model"
    assert "device" not in recs[fp32.name]["latency"]["host"]  # measured here, as before
