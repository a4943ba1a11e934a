"""Accuracy measured by the device (#39): the held-out images go to the device as one .npz, its outputs
come back, and the target's accuracy is the device's. The device is a stand-in (tests/standins/device:
LiteRT's BUILTIN_REF kernels, ONNX Runtime with graph optimisation off), a real second process
computing differently from this host; ssh and adb are the stand-ins of tests/standins (no Pi or phone here)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, STANDINS

from edgetransfer import gate
from edgetransfer.errors import ConfigError, RuntimeBackendError
from edgetransfer.evaluation import runners
from edgetransfer.records import Budget
from edgetransfer.records.measure import ValidationReport
from edgetransfer.runtime import device_io, load_session

DEVICE = f"{sys.executable} {STANDINS / 'device'} {{model}} {{inputs}} {{outputs}} --threads {{threads}}"
FILES = [("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")]


def _board(folder, runner: str, budgets: str = "") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "board.yaml").write_text(
        "name: board\ndescription: a stand-in device behind a command runner\nruntime: litert\n"
        "formats: [tflite, onnx]\nprecisions: [fp32, int8]\nmeasure: runner\nthreads: 1\n"
        f"runner: {{kind: command, template: {json.dumps(runner)}, timeout_s: 120}}\n{budgets}sources: [stand-in]\n"
    )
    return str(folder)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("EDGETRANSFER_STANDIN_PERMUTE", raising=False)


# -- the file protocol ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", FILES)
def test_tensors_round_trip_exactly_through_a_session(untrained_exports, untrained_images, key):
    """The inputs sent are the file's own input tensor; the device side turns them back into what the
    session quantizes to the very same integers (so host and device see the same tensor)."""
    art = untrained_exports[key]
    spec = load_session(art.path).input_spec
    x, _ = untrained_images
    t = device_io.to_tensor(x, spec)
    assert t.dtype.name == spec.dtype and t.shape[1:] == tuple(spec.shape[1:])
    assert np.array_equal(device_io.to_tensor(device_io.to_pixels(t, spec), spec), t)


def test_predict_subcommand_writes_one_row_per_image(untrained_exports, untrained_images, tmp_path):
    from edgetransfer.runtime.__main__ import main

    art = untrained_exports[("tflite", "int8")]
    spec = load_session(art.path).input_spec
    x, _ = untrained_images
    device_io.write_npz(tmp_path / "x.npz", x=device_io.to_tensor(x, spec))
    assert (
        main(["predict", str(art.path), "--inputs", str(tmp_path / "x.npz"), "--outputs", str(tmp_path / "y.npz")])
        == 0
    )
    y, runtime = device_io.read_outputs(tmp_path / "y.npz", len(x))
    host = np.concatenate([load_session(art.path).run(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(y, host) and "int8 input" in runtime


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"z": np.zeros((3, 3), np.float32)}, ["no key 'y'", "keys: z"]),
        ({"y": np.zeros((2, 3), np.float32)}, ["shape (2, 3)", "[3, classes]"]),
        ({"y": np.array(["a", "b", "c"])}, ["not numeric rows"]),
        ({"y": np.full((3, 3), np.nan, np.float32)}, ["NaN"]),
    ],
)
def test_a_bad_output_file_names_the_file_and_key(tmp_path, arrays, words):
    path = device_io.write_npz(tmp_path / "y.npz", **arrays)
    with pytest.raises(device_io.DataError) as exc:
        device_io.read_outputs(path, 3)
    assert str(path) in str(exc.value) and all(w in str(exc.value) for w in words)


def test_a_pickled_output_file_is_refused(tmp_path):
    path = tmp_path / "y.npz"
    np.savez(path, y=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(device_io.DataError, match="not a readable .npz|not numeric"):
        device_io.read_outputs(path, 1)


def test_template_takes_inputs_and_outputs_together():
    assert runners.parse("dev {model} {inputs} {outputs}", "p.yaml").predicts
    assert not runners.parse("dev {model}", "p.yaml").predicts
    with pytest.raises(ConfigError, match="together"):
        runners.parse("dev {model} {inputs}", "p.yaml")


# -- validate and check on the stand-in device ---------------------------------------------------


def test_validate_json_gives_the_devices_accuracy_per_file(invoke, untrained_exports, tmp_path, env):
    from edgetransfer import report

    d = _board(tmp_path / "profiles", DEVICE)
    arts = [str(untrained_exports[k].path) for k in FILES]
    code, out, err = invoke(
        "validate",
        *arts,
        "--target",
        "board",
        "--target",
        "host-cpu",
        "--targets-dir",
        d,
        "--budget-s",
        "0.3",
        "--json",
    )
    assert code == 0, err
    rep = ValidationReport.from_json(json.loads(out))
    on_board = [m for m in rep.records if m.target == "board"]
    assert len(on_board) == 4
    for m in on_board:
        dev = m.device_accuracy
        assert dev is not None and dev.runner == "command" and dev.images == 12
        assert m.accuracy == dev.accuracy and m.accuracy_by == dev.label and dev.label.startswith("device: ")
        assert 0.0 <= dev.agreement <= 1.0 and dev.max_abs_diff >= 0 and dev.host_runtime in ("litert", "onnxruntime")
        assert ("BUILTIN_REF" in dev.runtime) == m.artifact.endswith(".tflite")
        assert m.latency.provenance == "on-device"
    # fp32 on reference kernels agrees with XNNPACK to float rounding; the figures are the device's own
    fp32 = next(m for m in on_board if m.artifact.endswith(".tflite") and m.precision == "fp32")
    assert fp32.device_accuracy.agreement == 1.0 and fp32.device_accuracy.max_abs_diff < 1e-4
    # on the host target the accuracy is this machine's, and says which runtime produced it
    on_host = {Path(m.artifact).suffix: m for m in rep.records if m.target == "host-cpu"}
    assert on_host[".tflite"].accuracy_by == "litert, host" and on_host[".onnx"].accuracy_by == "onnxruntime, host"
    assert all(m.device_accuracy is None for m in on_host.values())
    header, rows = report.table(rep)
    cells = [r[header.index("accuracy")] for r in rows]
    assert sum("(device: " in c and "agrees with host" in c for c in cells) == 4
    assert sum(c.endswith("(litert, host)") or c.endswith("(onnxruntime, host)") for c in cells) == 4
    # check --from-report judges the device's figures as recorded (no model loaded, no device reached)
    from edgetransfer import targets

    verdicts = gate.from_report(rep, targets.get("board", d), (Budget(accuracy_drop=100.0, disagreement=100.0),))
    assert len(verdicts) == 4 and all(v.exit_code == 0 for v in verdicts)
    assert all(c.provenance == "on-device" and "device: " in c.message for v in verdicts for c in v.checks)


def test_an_accuracy_budget_judges_the_devices_figure(
    invoke, untrained_exports, untrained_run, tmp_path, env, monkeypatch
):
    """A device that mixes up its output index (image i's top-1 becomes class (i + 1) mod 3): its accuracy is known
    from the labels alone, the host's run of the same file does not change, and the verdict follows the device."""
    from edgetransfer.evaluation.heldout import held_out

    d = _board(tmp_path / "profiles", DEVICE)
    art = untrained_exports[("tflite", "int8")].path
    args = ["check", art, "--target", "board", "--targets-dir", d, "--json"]

    def verdict(*extra):
        code, out, err = invoke(*args, *extra)
        assert code in (0, 1), err
        return code, {c["name"]: c for c in json.loads(out)["checks"]}

    code, good = verdict("--max-accuracy-drop", "100", "--max-disagreement", "0")
    assert code == 0 and "device: " in good["accuracy_drop"]["message"]
    monkeypatch.setenv("EDGETRANSFER_STANDIN_PERMUTE", "classes")
    code, bad = verdict("--max-accuracy-drop", "100", "--max-disagreement", "0")
    assert code == 1 and bad["disagreement"]["status"] == "failed" and bad["disagreement"]["figure"] > 0
    labels = held_out(untrained_run).y
    device_acc = float(np.mean((np.arange(len(labels)) + 1) % 3 == labels))
    g, b = good["accuracy_drop"]["figure"], bad["accuracy_drop"]["figure"]
    assert g != b and b == pytest.approx(g + 100 * (1 / 3 - device_acc), abs=0.01)  # host run predicts one class
    # the drop budget alone, set between the two figures: the verdict follows the device
    assert b > g and verdict("--max-accuracy-drop", str((g + b) / 2))[0] == 1
    monkeypatch.delenv("EDGETRANSFER_STANDIN_PERMUTE")
    assert verdict("--max-accuracy-drop", str((g + b) / 2))[0] == 0


def test_disagreement_needs_a_device_run(untrained_exports):
    from edgetransfer.records.measure import Measurement

    m = Measurement(artifact="m.tflite", format="tflite", precision="int8", target="host-cpu", size_bytes=1)
    with pytest.raises(ConfigError, match="no device ran the held-out images"):
        gate.judge(m, Budget(disagreement=1.0))


def test_the_host_label_says_a_latency_only_runner_did_not_run_the_images(untrained_exports, tmp_path):
    from edgetransfer import targets
    from edgetransfer.evaluation import device as device_accuracy

    (tmp_path / "phone.yaml").write_text(
        "name: phone\ndescription: adb, latency only\nruntime: litert\nformats: [tflite]\nprecisions: [int8]\n"
        "measure: runner\nrunner: {kind: adb}\nsources: [stand-in]\n"
    )
    t = targets.get(str(tmp_path / "phone.yaml"))
    art = untrained_exports[("tflite", "int8")]
    assert not device_accuracy.predicts(t)
    assert device_accuracy.host_label(art, t) == "litert, host; the adb runner gives latency only"


# -- ssh and adb stand-ins -------------------------------------------------------------------------


def test_ssh_predict_runs_the_runtime_on_the_device_and_cleans_up(device, untrained_exports, untrained_images):
    art = untrained_exports[("onnx", "int8")]
    spec = load_session(art.path).input_spec
    x, _ = untrained_images
    r = runners.parse({"kind": "ssh", "host": "pi@raspberrypi.local"}, "p.yaml")
    out = r.predict(art.path, device_io.to_tensor(x, spec), 1)
    host = np.concatenate([load_session(art.path).run(x[i : i + 1]) for i in range(len(x))])
    assert out.y.shape == host.shape and np.allclose(out.y, host, atol=1e-5) and "onnxruntime" in out.runtime
    assert not list((device / "tmp").iterdir())  # model, inputs and outputs removed


def test_adb_predict_needs_the_phones_python(device, untrained_exports, untrained_images):
    art = untrained_exports[("tflite", "int8")]
    spec = load_session(art.path).input_spec
    x = device_io.to_tensor(untrained_images[0], spec)
    with pytest.raises(ConfigError, match="latency only"):
        runners.parse({"kind": "adb"}, "p.yaml").predict(art.path, x)
    out = runners.parse({"kind": "adb", "python": "python3"}, "p.yaml").predict(art.path, x)
    assert out.y.shape[0] == len(x) and out.device == "Standin Pixel 8"
    assert not list((device / "data/local/tmp").iterdir())


def test_a_device_that_writes_no_outputs_is_a_toolchain_error(untrained_exports, untrained_images, tmp_path):
    art = untrained_exports[("tflite", "fp32")]
    x = untrained_images[0]
    r = runners.parse(f"{shutil.which('true')} {{model}} {{inputs}} {{outputs}}", "p.yaml")
    with pytest.raises(RuntimeBackendError, match="unusable output file"):
        r.predict(art.path, x)


def test_disagreement_is_one_budget_in_profile_pipeline_and_cli(tmp_path):
    from edgetransfer import targets
    from edgetransfer.records.flows import CheckSpec

    d = _board(tmp_path / "profiles", DEVICE, "budgets: {accuracy_drop: 1.0, disagreement: 2.5}\n")
    t = targets.get("board", d)
    assert t.budgets.disagreement == 2.5
    pipeline = CheckSpec.from_json({"target": "board", "max_disagreement": 1.0}).budget()
    assert gate.budget_for(t, pipeline, Budget(disagreement=0.0)).disagreement == 0.0  # CLI wins, zero allowed
    assert gate.budget_for(t, pipeline).disagreement == 1.0
    assert gate.budget_for(t, accuracy=False).disagreement is None  # no held-out data: nothing to run on the device
    with pytest.raises(ConfigError, match="disagreement"):
        Budget(disagreement=-1)


def test_adb_predict_without_the_phones_edgetransfer_says_how_to_install_it(
    device, untrained_exports, untrained_images, monkeypatch
):
    monkeypatch.setenv("EDGETRANSFER_STANDIN_PYTHON", "/nonexistent/python3")
    art = untrained_exports[("tflite", "int8")]
    x = device_io.to_tensor(untrained_images[0], load_session(art.path).input_spec)
    with pytest.raises(RuntimeBackendError) as exc:
        runners.parse({"kind": "adb", "python": "python3"}, "p.yaml").predict(art.path, x)
    assert "pip install" in str(exc.value) and "runner.python" in str(exc.value)
    assert not list((device / "data/local/tmp").iterdir())  # the pushed copies are gone
