"""Issue 37, items 4-8: nothing hangs, bad input is exit 2 (never 70), refusals where a value was
used as given, target files beside the pipeline file, and labels that stay one line each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, make_folder

from edgetransfer.errors import ConfigError, EdgeTransferError

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args, timeout=120) -> tuple[int, str, float]:
    """``edgetransfer *args`` in a child: a hang is a failed test after ``timeout``, not a stuck suite."""
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "edgetransfer", *map(str, args)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgetransfer {' '.join(map(str, args))} did not return within {timeout} s")
    return res.returncode, res.stderr, time.perf_counter() - t0


@pytest.fixture
def images(tmp_path) -> Path:
    return make_folder(tmp_path / "images", {"a": 3, "b": 3}, size=(32, 32))


# -- 4. hangs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "codes", "text"),
    [
        ("127.0.0.1:1", (2,), "nothing accepts connections"),
        ("no-such-host.invalid:6379", (2, 3), "does not resolve"),
        ("not an address!", (2,), "is not HOST:PORT"),
        ("ray://127.0.0.1:1", (2,), "nothing accepts connections"),
        ("127.0.0.1:99999", (2,), "is not HOST:PORT"),
    ],
)
def test_sweep_on_a_ray_address_that_answers_nothing_returns(images, tmp_path, address, codes, text):
    code, err, seconds = _cli(
        "sweep", "--data", images, "--executor", "ray", "--ray-address", address, "--out", tmp_path / "s", timeout=90
    )
    assert code in codes and text in err, (code, err[-1500:])
    assert seconds < 60


def test_a_ray_address_that_times_out_is_exit_3(monkeypatch):
    """A stand-in for a black-holed address (no network here to drop packets): connect() times out."""
    import socket

    from edgetransfer.errors import ToolchainError
    from edgetransfer.flows import ray_address

    def slow(self, addr):
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket.socket, "connect", slow)
    with pytest.raises(ToolchainError, match="no answer within"):
        ray_address.reachable("127.0.0.1:6379", timeout_s=0.1)


def test_a_ray_init_failure_is_a_toolchain_error_naming_the_address(monkeypatch):
    pytest.importorskip("ray")
    import ray

    from edgetransfer.errors import ToolchainError
    from edgetransfer.flows import executors

    def fail(**kw):
        raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "init", fail)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ToolchainError, match="could not join the Ray cluster at ray://10.0.0.5:10001"):
        executors.run("ray", str, [1], lambda o: None, address="ray://10.0.0.5:10001")


@pytest.mark.parametrize("which", ["model", "labels"])
def test_import_of_a_fifo_is_refused_not_blocked(images, tmp_path, which):
    fifo = tmp_path / ("m.keras" if which == "model" else "labels.txt")
    os.mkfifo(fifo)
    model = fifo if which == "model" else tmp_path / "m2.keras"
    if which == "labels":
        model.write_bytes(b"PK")  # refused for the labels before the model is opened
    args = ["import", model, "--data", images, "--preprocess", "none", "--out", tmp_path / "r"]
    code, err, _ = _cli(*args, *(["--labels", fifo] if which == "labels" else []), timeout=60)
    assert code == 2 and "not a regular file" in err and str(fifo) in err, err


# -- 5. exit 70 -> exit 2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "text"),
    [
        (b"\x00\xffgarbage", "not JSON"),
        ("\udcff".encode("utf-8", "surrogatepass"), "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'"a string"', "not a model"),
        (b'{"class_name": ' * 20_000 + b"1" + b"}" * 20_000, "nested too deeply"),
    ],
)
def test_import_of_an_h5_with_a_garbage_config_is_exit_2(images, tmp_path, invoke, config, text):
    import h5py
    import numpy as np

    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = np.void(config) if b"\x00" in config else config
    code, _, err = invoke("import", path, "--data", images, "--preprocess", "none", "--out", tmp_path / "r")
    assert code == 2 and "model.h5" in err, err
    assert text in err or "not JSON" in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


@pytest.mark.parametrize("threads", ["four", 1_000_000_000, 0, 2.5, -1, True, None])
def test_settings_from_with_nonsense_threads_is_exit_2(untrained_exports, tmp_path, invoke, threads):
    from test_untrusted_reports import _report

    art = untrained_exports[("tflite", "fp32")].path
    doc = _report(tmp_path, art)
    doc["records"][0]["settings"] = {"threads": threads, "op_resolver": "xnnpack"}
    report = tmp_path / "tuned.json"
    report.write_text(json.dumps(doc))
    code, _, err = invoke("check", art, "--settings-from", report, "--max-latency-ms", "1000")
    assert code == 2 and "threads" in err and "tuned.json" in err, err


def test_settings_of_another_runtime_or_value_are_refused():
    from edgetransfer.runtime import spec

    assert spec.check_settings("litert", {"threads": 4, "op_resolver": "builtin"}, "r") == {
        "threads": 4,
        "op_resolver": "builtin",
    }
    for bad in ({"op_resolver": "rm -rf"}, {"graph_optimization_level": "all"}, {"threads": 1025}):
        with pytest.raises(ConfigError, match="r: "):
            spec.check_settings("litert", bad, "r")


@pytest.mark.parametrize("damage", ["missing", "folder"])
def test_a_teacher_without_its_model_is_exit_2(untrained_run, tmp_path, damage):
    from edgetransfer.training.distill import load_teacher

    run = tmp_path / "teacher"
    shutil.copytree(untrained_run.run_dir, run)
    (run / "model.keras").unlink()
    if damage == "folder":
        (run / "model.keras").mkdir()
    with pytest.raises(ConfigError, match="teacher's model file model.keras is") as err:
        load_teacher(run, untrained_run.classes)
    assert err.value.exit_code == 2


# -- 6. refused where a value was used as given ---------------------------------------------------------------


def test_import_of_an_onnx_with_two_outputs_is_refused(images, tmp_path, invoke):
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[1, 2]),
        helper.make_node("Slice", ["m", "st", "en", "ax"], ["y0"]),
        helper.make_node("Neg", ["y0"], ["y1"]),
    ]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("st", 0), ("en", 2), ("ax", 1))]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 32, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y0", "y1")],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    code, _, err = invoke("import", path, "--data", images, "--preprocess", "none", "--out", tmp_path / "r")
    assert code == 2 and "two.onnx has 2 outputs" in err, err


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1e", "/"])
def test_labels_with_a_line_separator_are_refused(tmp_path, sep):
    from edgetransfer.flows.import_keras import read_labels

    labels = tmp_path / "labels.txt"
    labels.write_text(f"a\nb{sep}c\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2 of the labels file") as err:
        read_labels(labels, ("a", "b"))
    assert repr(sep) in err.value.problem
    labels.write_text("a\r\nb\r\n", encoding="utf-8")  # Windows line ends are fine
    assert read_labels(labels, ("a", "b"))[0] == ("a", "b")


@pytest.mark.parametrize("which", ["model", "labels"])
def test_dev_zero_as_a_model_or_labels_is_refused_before_reading(images, tmp_path, which):
    model = Path("/dev/zero") if which == "model" else tmp_path / "m.keras"
    extra = ["--labels", "/dev/zero"] if which == "labels" else []
    if which == "labels":
        model.write_bytes(b"PK")
    code, err, _ = _cli("import", model, "--data", images, "--preprocess", "none", "--out", tmp_path / "r", *extra)
    assert code == 2 and "not a regular file" in err and "/dev/zero" in err and "memory" not in err, err


# -- 7. target files beside the pipeline file -------------------------------------------------------


def test_relative_target_files_resolve_beside_the_pipeline_file(tmp_path, monkeypatch):
    from edgetransfer import targets
    from edgetransfer.flows.picks import target_reference
    from edgetransfer.flows.pipeline import Flow

    project = tmp_path / "project"
    (project / "profiles").mkdir(parents=True)
    shutil.copy(targets.get("host-cpu").path, project / "profiles" / "mine.yaml")
    pipe = project / "pipeline.yaml"
    pipe.write_text("data: images\nout: run\nvalidate:\n  targets: [profiles/mine.yaml, host-cpu]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    flow = Flow.from_yaml(pipe)
    assert flow.validate.targets == (str(project / "profiles" / "mine.yaml"), "host-cpu")
    assert targets.get(flow.validate.targets[0]).name  # readable from here
    monkeypatch.chdir(project)  # the sweep ran here with --target profiles/mine.yaml
    ref = target_reference(targets.get("profiles/mine.yaml"))
    assert ref == str(project / "profiles" / "mine.yaml")  # the pick file runs from anywhere
    assert target_reference(targets.get("host-cpu")) == "host-cpu"


# -- 8. an old run manifest whose classes would break labels.txt -------------------------------------------


@pytest.mark.parametrize("bad", ["../../etc", "a\nb", "x\u2028y"])
def test_export_of_a_run_whose_manifest_has_a_bad_class_is_exit_2(untrained_run, tmp_path, invoke, bad):
    run = tmp_path / "old-run"
    shutil.copytree(untrained_run.run_dir, run)
    manifest = run / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["classes"][1] = bad
    manifest.write_text(json.dumps(doc))
    code, _, err = invoke("export", run, "--out", tmp_path / "exp")
    assert code == 2, err
    assert "classes[1]" in err and repr(bad) in err and "rename that class" in err, err
    assert not (tmp_path / "exp").exists() or not any((tmp_path / "exp").glob("*.tflite"))


def test_every_refusal_here_is_an_edgetransfer_error():
    assert issubclass(ConfigError, EdgeTransferError)
