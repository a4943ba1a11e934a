"""Device runners end to end against stand-in ssh/scp/adb/benchmark_model (tests/standins/) on a real tiny model."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from edgetransfer.errors import EXIT_TOOLCHAIN, ConfigError, RuntimeBackendError
from edgetransfer.evaluation import runners
from edgetransfer.runtime.latency import MEASURED

REPO = Path(__file__).resolve().parents[3]
PROFILE = "targets/device.yaml"
BENCH_BIN = "/data/local/bin/benchmark_model"


def left_on(root: Path) -> list[str]:
    """Files left in the device's work folders (the model copies must be gone)."""
    return sorted(str(p.relative_to(root)) for d in ("tmp", "data/local/tmp") for p in (root / d).iterdir())


def fault(monkeypatch, name: str) -> None:
    monkeypatch.setenv("EDGETRANSFER_STANDIN_FAULT", name)


def ssh_runner(**kw) -> runners.Runner:
    return runners.parse({"kind": "ssh", "host": "pi@raspberrypi.local", **kw}, PROFILE)


def adb_runner(**kw) -> runners.Runner:
    return runners.parse({"kind": "adb", "benchmark_model": BENCH_BIN, **kw}, PROFILE)


# -- parsing -------------------------------------------------------------------------------------


def test_parse_kinds_and_backward_compatible_string():
    cmd = runners.parse("bench-it {model} --threads {threads}", PROFILE)
    assert isinstance(cmd, runners.CommandRunner) and cmd.timeout_s == runners.DEFAULT_TIMEOUT_S
    ssh = runners.parse({"kind": "ssh", "host": "pi@pi4", "port": 2222, "timeout_s": 60}, PROFILE)
    assert (ssh.kind, ssh.host, ssh.port, ssh.python, ssh.timeout_s) == ("ssh", "pi@pi4", 2222, "python3", 60.0)
    adb = runners.parse({"kind": "adb", "serial": "R58M", "use_gpu": True}, PROFILE)
    assert (adb.kind, adb.serial, adb.remote_dir, adb.use_gpu) == ("adb", "R58M", "/data/local/tmp", True)
    assert isinstance(adb, runners.Runner)


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"kind": "ssh", "host": "pi@pi4", "hots": 1}, ["runner.hots", "did you mean"]),
        ({"kind": "ssh", "host": "pi@pi4", "port": "22"}, ["runner.port", "str"]),
        ({"kind": "ssh"}, ["needs 'host'"]),
        ({"kind": "adb", "use_gpu": "yes"}, ["runner.use_gpu"]),
        ({"kind": "adb", "use_gpu": True, "use_nnapi": True}, ["use_nnapi"]),
        ({"kind": "adb", "timeout_s": 0}, ["timeout_s"]),
        ({"kind": "telnet"}, ["runner.kind", "ssh, adb, command"]),
        ({"kind": "command", "template": "run {model} {device}"}, ["['device']"]),
        ({"kind": "ssh", "host": "pi@pi4", "remote_dir": "tmp; rm -rf /"}, ["remote_dir"]),
        (["ssh"], ["must be a command string or a mapping"]),
    ],
)
def test_parse_refuses_bad_runners_naming_file_and_key(raw, words):
    with pytest.raises(ConfigError) as err:
        runners.parse(raw, PROFILE)
    assert err.value.path == PROFILE and err.value.fix
    for w in words:
        assert w in str(err.value)


def test_parse_benchmark_model_real_format():
    # Lines as LiteRT 2.x prints them (benchmark_model.cc / Stat::OutputToStream), numbers from a real run.
    text = """INFO: Initialized session in 119.515ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 1000 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
"""
    lat = runners.parse_benchmark_model(text, threads=4)
    assert (lat.p50, lat.p90, lat.p99, lat.mean, lat.runs) == (51.891, 68.628, 686.105, 63.7432, 1000)
    assert (lat.load_ms, lat.peak_memory_mb, lat.threads, lat.provenance) == (119.52, 55.5, 4, MEASURED)
    assert lat.detail["p90_from"] == "p95" and lat.detail["first_inference_ms"] == 87.112
    old = (
        "count=50 curr=2000(all same)\nInference timings in us: Init: 1.2e+06, First inference: 2.1e+06, "
        "Warmup (avg): 2.1e+06, Inference (avg): 2.00001e+06"
    )
    lat = runners.parse_benchmark_model(old)
    assert (lat.p50, lat.load_ms, lat.runs, lat.detail["p90_from"]) == (2000.01, 1200.0, 50, "avg")
    with pytest.raises(ValueError):
        runners.parse_benchmark_model("Segmentation fault")


# -- ssh -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [("tflite", "fp32"), ("onnx", "int8")])
def test_ssh_measures_on_the_device_and_cleans_up(device, untrained_exports, key):
    res = ssh_runner(timeout_s=120).run(untrained_exports[key].path, threads=1)
    assert res.kind == "ssh" and res.latency.provenance == MEASURED
    assert res.latency.p50 > 0 and res.latency.runs >= 20 and res.latency.threads == 1
    assert res.device.startswith(f"{os.uname().sysname} {os.uname().nodename}")  # `uname -a` on the "device"
    assert res.latency.host["device"] == res.device
    assert res.command[0] == "ssh" and "pi@raspberrypi.local" in res.command
    assert "edgetransfer.runtime bench /tmp/edgetransfer-" in res.command[-1]
    assert left_on(device) == []


def test_ssh_unreachable_host(device, untrained_exports, monkeypatch):
    fault(monkeypatch, "unreachable")
    with pytest.raises(RuntimeBackendError) as err:
        ssh_runner().run(untrained_exports["tflite", "fp32"].path)
    msg = str(err.value)
    assert err.value.exit_code == EXIT_TOOLCHAIN and err.value.path == PROFILE
    assert "pi@raspberrypi.local" in msg and "`ssh -o BatchMode=yes" in msg and "No route to host" in msg
    assert "key-based login" in err.value.fix
    assert left_on(device) == []


def test_ssh_timeout_kills_and_cleans_up(device, untrained_exports, monkeypatch):
    fault(monkeypatch, "hang")
    t0 = time.monotonic()
    with pytest.raises(RuntimeBackendError, match=r"timeout_s \(2 s\); killed"):
        ssh_runner(timeout_s=2).run(untrained_exports["tflite", "fp32"].path)
    assert time.monotonic() - t0 < 8
    assert left_on(device) == []


def test_ssh_garbage_output(device, untrained_exports, monkeypatch):
    fault(monkeypatch, "garbage")
    with pytest.raises(RuntimeBackendError, match="printed no bench JSON") as err:
        ssh_runner().run(untrained_exports["tflite", "fp32"].path)
    assert "edgetransfer.runtime bench" in err.value.fix
    assert left_on(device) == []


def test_ssh_device_without_edgetransfer(device, untrained_exports, monkeypatch):
    fault(monkeypatch, "nomodule")
    with pytest.raises(RuntimeBackendError, match="No module named edgetransfer") as err:
        ssh_runner().run(untrained_exports["tflite", "fp32"].path)
    assert 'pip install "edgetransfer[runtime]"' in err.value.fix
    assert left_on(device) == []


def test_ssh_missing_local_binary(device, untrained_exports, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeBackendError, match="'ssh' is not on PATH") as err:
        ssh_runner().run(untrained_exports["tflite", "fp32"].path)
    assert "openssh-client" in err.value.fix


# -- adb -----------------------------------------------------------------------------------------


def test_adb_benchmark_model_on_the_device(device, untrained_exports):
    res = adb_runner(serial="standin-0001", use_gpu=True, timeout_s=120).run(
        untrained_exports["tflite", "int8"].path, threads=2
    )
    assert res.kind == "adb" and res.device == "Standin Pixel 8"
    lat = res.latency
    assert lat.provenance == MEASURED and lat.p50 > 0 and lat.p90 >= lat.p50 and lat.runs >= 10
    assert lat.detail["source"] == "benchmark_model" and lat.host["delegate"] == "gpu" and lat.threads == 2
    assert res.command[:4] == ["adb", "-s", "standin-0001", "shell"]
    assert f"{BENCH_BIN} --graph=/data/local/tmp/edgetransfer-" in res.command[-1]
    assert res.command[-1].endswith("--num_threads=2 --use_gpu=true")
    assert left_on(device) == []


@pytest.mark.parametrize(
    "name, kw, words",
    [
        ("crash", {}, ["crashed (exit 139, signal 11)", "delegate"]),
        ("garbage", {}, ["printed no benchmark_model summary"]),
        ("unreachable", {}, ["could not reach the device", "no devices/emulators found", "adb devices"]),
        ("", {"serial": "R58M00"}, ["adb device R58M00", "device 'R58M00' not found"]),
        (
            "",
            {"benchmark_model": "/data/local/tmp/nope/benchmark_model"},
            ["exit 127", "inaccessible or not found", "chmod +x"],
        ),
    ],
)
def test_adb_failures_name_device_and_command(device, untrained_exports, monkeypatch, name, kw, words):
    if name:
        fault(monkeypatch, name)
    with pytest.raises(RuntimeBackendError) as err:
        adb_runner(**kw).run(untrained_exports["tflite", "fp32"].path, threads=1)
    msg = str(err.value)
    assert err.value.exit_code == EXIT_TOOLCHAIN and "`adb " in msg and err.value.path == PROFILE
    for w in words:
        assert w in msg
    assert left_on(device) == []


def test_adb_timeout(device, untrained_exports, monkeypatch):
    fault(monkeypatch, "hang")
    t0 = time.monotonic()
    with pytest.raises(RuntimeBackendError, match="killed"):
        adb_runner(timeout_s=2).run(untrained_exports["tflite", "fp32"].path)
    assert time.monotonic() - t0 < 8
    assert left_on(device) == []


# -- command -------------------------------------------------------------------------------------


def test_command_runner_runs_the_template(untrained_exports):
    template = f"{sys.executable} -m edgetransfer.runtime bench {{model}} --threads {{threads}} --budget-s 0.3 --json"
    res = runners.parse(template, PROFILE).run(untrained_exports["onnx", "fp32"].path, threads=1)
    assert res.kind == "command" and res.latency.provenance == MEASURED and res.latency.p50 > 0
    assert res.command[:4] == [sys.executable, "-m", "edgetransfer.runtime", "bench"]
    assert res.device and res.latency.host["device"] == res.device


@pytest.mark.parametrize(
    "template, words",
    [
        ("sleep 30", ["timeout_s (2 s); killed"]),
        ("echo not json", ["printed no bench JSON", "'not json'"]),
        (f"{sys.executable} -c 'import sys; sys.exit(\"boom\")'", ["exited 1: boom"]),
        ("no-such-tool-here {model}", ["'no-such-tool-here' is not on PATH"]),
    ],
)
def test_command_runner_failures(untrained_exports, template, words):
    t0 = time.monotonic()
    with pytest.raises(RuntimeBackendError) as err:
        runners.parse({"kind": "command", "template": template, "timeout_s": 2}, PROFILE).run(
            untrained_exports["tflite", "fp32"].path
        )
    assert time.monotonic() - t0 < 8
    for w in words:
        assert w in str(err.value)
