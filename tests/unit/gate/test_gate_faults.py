"""Issue #13, the gate and its outputs: NaN models, hostile or mistyped profiles and pipeline files,
degenerate calibration, latency samples of another file, JUnit on errors, unstable hosts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from edgetransfer.errors import RuntimeBackendError

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data_dir(untrained_run):
    return untrained_run.manifest.data.root


# -- a model that outputs NaN -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_export(tmp_path_factory):
    """A run folder whose classifier's Dense kernel is NaN, exported to fp32 TFLite."""
    import keras

    from edgetransfer import backbones
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.quantization import QuantRecipe
    from edgetransfer.training import TrainedModel

    root = tmp_path_factory.mktemp("nan")
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))
    dense = keras.layers.Dense(2, activation="softmax", name="classes")
    model = keras.Model(inp, dense(x))
    dense.set_weights([np.full((3, 2), np.nan, np.float32), np.zeros(2, np.float32)])
    run_dir = root / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    data = root / "data"
    for ci, name in enumerate(["a", "b"]):
        (data / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 60 + 100 * ci + i, np.uint8)).save(data / name / f"{i}.png")
    manifest = {
        "kind": "edgetransfer.run",
        "schema": 2,
        "backbone": "efficientnet_lite0",
        "weights": "none",
        "input_size": 32,
        "preprocess": backbones.get("efficientnet_lite0").preprocess.to_json(),
        "resize_policy": "crop",
        "classes": ["a", "b"],
        "data": {"root": str(data), "fingerprint": "synthetic"},
        "config": {},
        "metrics": {"val_accuracy": None},
        "files": {"model": "model.keras"},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (art,) = export(TrainedModel.from_dir(run_dir), ["tflite"], [QuantRecipe.fp32()], calibration=str(data))
    return art.path, data


def test_nan_model_fails_check_as_a_toolchain_error(nan_export, invoke):
    path, data = nan_export
    code, out, err = invoke("check", path, "--max-accuracy-drop", "50", "--data", data)
    assert code == 3, (out, err)
    assert "NaN" in err and path.name in err and "PASSED" not in out
    _no_traceback(err)


def test_nan_model_is_refused_by_classifier(nan_export):
    from edgetransfer.runtime import Classifier

    path, data = nan_export
    with pytest.raises(RuntimeBackendError, match="NaN") as exc:
        Classifier(path).classify(data / "a" / "0.png")
    assert exc.value.path == str(path)


# -- target profiles: duplicate keys, types, where they come from -----------------------------------------------------


def _profile(folder: Path, name: str, extra: str, base: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = base or (
        f"name: {name}\ndescription: test\nruntime: litert\nformats: [tflite, onnx]\nprecisions: [fp32, fp16, int8]\n"
        "measure: host\nthreads: 1\nsources: [test]\n"
    )
    path = folder / f"{name}.yaml"
    path.write_text(text + extra)
    return path


def test_duplicate_budget_key_in_a_profile_names_the_line(untrained_exports, tmp_path, invoke):
    path = _profile(tmp_path / "t", "dup", "budgets:\n  accuracy_drop: 1.0\n  accuracy_drop: 50.0\n")
    art = untrained_exports[("tflite", "fp32")].path
    code, _, err = invoke("check", art, "--target", "dup", "--targets-dir", tmp_path / "t", "--max-size-mb", "50")
    assert code == 2, err
    assert str(path) in err and "accuracy_drop" in err and "line 11" in err
    _no_traceback(err)


@pytest.mark.parametrize(
    "extra,key",
    [
        ("threads: 2.5\n", "threads"),
        ("threads: 0\n", "threads"),
        ("budgets:\n  latency_p90_ms: 10ms\n", "latency_p90_ms"),
        ("budgets:\n  accuracy_drop: -1\n", "accuracy_drop"),
        ("formats: tflite\n", "formats"),
    ],
)
def test_profile_type_errors_name_file_and_key(untrained_exports, tmp_path, invoke, extra, key):
    base = "name: typed\ndescription: t\nruntime: litert\nprecisions: [fp32]\nmeasure: host\nsources: [test]\n"
    if "formats" not in extra:
        base += "formats: [tflite]\n"
    if "threads" not in extra:
        base += "threads: 1\n"
    path = _profile(tmp_path / "t", "typed", extra, base=base)
    art = untrained_exports[("tflite", "fp32")].path
    code, _, err = invoke("check", art, "--target", "typed", "--targets-dir", tmp_path / "t", "--max-size-mb", "50")
    assert code == 2, err
    assert str(path) in err and key in err
    _no_traceback(err)


@pytest.mark.slow
def test_runner_profile_in_the_current_folder_is_not_run_unless_pointed_at(untrained_exports, tmp_path, monkeypatch):
    """A repository cloned from anywhere may ship targets/evil.yaml with a command: not run from the cwd."""
    marker = tmp_path / "ran"
    runner = f'runner: {{kind: command, template: "touch {marker} {{model}}", timeout_s: 30}}\n'
    path = _profile(tmp_path / "targets", "evil", runner)
    path.write_text(path.read_text().replace("measure: host", "measure: runner"))
    art = untrained_exports[("tflite", "fp32")].path
    cmd = [sys.executable, "-m", "edgetransfer", "validate", art, "--target", "evil", "--budget-s", "0.05", "--json"]
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert not marker.exists()
    assert str(path) in res.stderr and "--targets-dir" in res.stderr
    _no_traceback(res.stderr)
    # every output says where each profile came from
    res = subprocess.run(
        [*cmd[:6], "host-cpu", "--budget-s", "0.05", "--json"], cwd=tmp_path, env=ENV, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["targets"]["host-cpu"].endswith("host-cpu.yaml")
    assert not marker.exists()


def test_profiles_say_where_they_came_from(tmp_path, invoke):
    _profile(tmp_path / "t", "mine", "")
    code, out, err = invoke("targets", "list", "--targets-dir", tmp_path / "t", "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = doc if isinstance(doc, list) else doc.get("targets", doc)
    text = json.dumps(rows)
    assert str(tmp_path / "t" / "mine.yaml") in text and "host-cpu.yaml" in text


# -- calibration ------------------------------------------------------------------------------------------------------


def test_int8_on_one_black_image_warns_and_validate_finds_it(untrained_run, tmp_path, invoke, caplog):
    calib = tmp_path / "black"
    calib.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(calib / "black.png")
    out = tmp_path / "exp"
    args = ["export", untrained_run.run_dir, "--precision", "int8", "--calibration", calib, "--out", out]
    with caplog.at_level(logging.WARNING, logger="edgetransfer"):
        code, _, err = invoke(*args)
    assert code == 0, err
    assert "only 1 image" in caplog.text and "uniform" in caplog.text
    (art,) = out.glob("*.tflite")
    code, res, err = invoke("validate", art, "--budget-s", "0.05", "--json")
    assert code == 0, err
    findings = json.loads(res)["findings"]
    assert any(art.name in f and "1 image" in f for f in findings), findings


def test_calibration_size_3_warns(untrained_run, tmp_path, invoke, caplog):
    out = tmp_path / "exp"
    with caplog.at_level(logging.WARNING, logger="edgetransfer"):
        code, _, err = invoke(
            "export", untrained_run.run_dir, "--precision", "int8", "--calibration-size", "3", "--out", out
        )
    assert code == 0, err
    assert "only 3 image(s) (asked for 3)" in caplog.text


# -- latency samples ---------------------------------------------------------------------------------------------------


def _bench(path: Path) -> dict:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetransfer.runtime",
            "bench",
            path,
            "--json",
            "--budget-s",
            "0.05",
            "--min-runs",
            "3",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_latency_samples_of_another_file_are_refused(untrained_exports, tmp_path, invoke):
    int8 = untrained_exports[("tflite", "int8")].path
    other = tmp_path / "onnx.json"
    other.write_text(json.dumps(_bench(untrained_exports[("onnx", "fp32")].path)))
    code, _, err = invoke("check", int8, "--max-latency-ms", "1000", "--latency-samples", other)
    assert code == 2, err
    assert "measured another file" in err and int8.name in err and "model_fp32.onnx" in err
    _no_traceback(err)


def test_repeated_latency_samples_are_all_used(untrained_exports, tmp_path, invoke):
    art = untrained_exports[("tflite", "int8")].path
    files = []
    for i, p90 in enumerate([5.0, 5.1, 4.9]):
        f = tmp_path / f"s{i}.json"
        f.write_text(json.dumps({"p90": p90, "sha256": _sha(art)}))
        files += ["--latency-samples", f]
    code, out, err = invoke("check", art, "--max-latency-ms", "10", *files, "--json")
    assert code == 0, err
    chk = json.loads(out)["checks"][0]
    assert chk["figure"] == pytest.approx(5.0) and chk["interval"][0] > -1e9  # three samples: a finite interval
    # one bad file among them spoils the lot
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"p90": -1, "sha256": _sha(art)}))
    code, _, err = invoke("check", art, "--max-latency-ms", "10", *files, "--latency-samples", bad)
    assert code == 2 and "p90 -1" in err and "positive" in err, err
    _no_traceback(err)


def test_unstable_samples_are_inconclusive_with_the_reason(untrained_exports, tmp_path, invoke):
    art = untrained_exports[("tflite", "int8")].path
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(json.dumps({"p90": v, "sha256": _sha(art)}) for v in (5, 5, 12, 13)))
    code, out, err = invoke("check", art, "--max-latency-ms", "10", "--latency-samples", f)
    assert code == 4, (out, err)
    assert "INCONCLUSIVE" in out and "unstable" in out and "5..13" in out


# -- JUnit on an error ------------------------------------------------------------------------------------------------


def test_failing_check_overwrites_a_passing_junit_with_the_error(untrained_exports, tmp_path, invoke):
    junit = tmp_path / "j.xml"
    art = untrained_exports[("tflite", "fp32")]
    code, _, err = invoke("check", art.path, "--max-size-mb", "50", "--junit", junit)
    assert code == 0, err
    assert ET.parse(junit).getroot().get("failures") == "0"
    broken = tmp_path / "model_fp32.tflite"
    broken.write_bytes(b"")
    manifest = json.loads(art.path.with_name(art.path.name + ".manifest.json").read_text())
    manifest.update(sha256=_sha(broken), size_bytes=0)
    (tmp_path / "model_fp32.tflite.manifest.json").write_text(json.dumps(manifest))
    code, _, err = invoke("check", broken, "--max-size-mb", "50", "--junit", junit)
    assert code == 3, err
    _no_traceback(err)
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite.get("errors") == "1" and suite.find("testcase/error") is not None
    assert str(broken) in ET.tostring(root, encoding="unicode")
    assert not list(tmp_path.glob(".j.*"))  # no temporary JUnit left behind


# -- pipeline files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section,line,key",
    [("train", "  epochs: ten", "epochs"), ("check", "  max_size_mb: 5mb", "max_size_mb")],
)
def test_pipeline_type_errors_fail_before_any_training(tmp_path, section, line, key):
    (tmp_path / "data" / "a").mkdir(parents=True)
    body = {"train": "train:\n  backbone: efficientnet_lite0\n", "check": "check:\n  target: host-cpu\n"}
    text = "data: data\nout: out\n" + body[section] + line + "\n"
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "edgetransfer", "run", path], env=ENV, capture_output=True, text=True, timeout=300
    )
    elapsed = time.perf_counter() - start
    assert res.returncode == 2, res.stderr
    assert str(path) in res.stderr and key in res.stderr
    _no_traceback(res.stderr)
    assert elapsed < 30 and not (tmp_path / "out").exists()
