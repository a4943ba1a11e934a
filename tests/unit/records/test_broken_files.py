"""Issue #13, broken files: run folders, model.keras archives, manifests and exported artifacts that are
damaged, hostile or the wrong shape. Each: the right exit code, the file named, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_image

from edgetransfer.errors import EdgeTransferError

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


@pytest.fixture
def run_copy(untrained_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(untrained_run.run_dir, dst)
    return dst


def _rezip(src: Path, dst: Path, *, drop: str | None = None, extra: dict | None = None) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename != drop:
                zout.writestr(item, zin.read(item.filename))
        for name, data in (extra or {}).items():
            zout.writestr(name, data)


def _export(invoke, run: Path):
    return invoke("export", run, "--out", run.parent / "exp")


# -- model.keras -------------------------------------------------------------------------------------------------------


def _break(model: Path, how: str) -> None:
    good = model.read_bytes()
    if how in ("no_config", "no_weights"):
        tmp = model.with_suffix(".orig")
        model.rename(tmp)
        _rezip(tmp, model, drop="config.json" if how == "no_config" else "model.weights.h5")
        tmp.unlink()
    elif how == "bad_crc":
        with zipfile.ZipFile(model) as zf:
            info = zf.getinfo("config.json")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data = bytearray(good)
        data[start + 5] ^= 0xFF
        model.write_bytes(bytes(data))
    elif how == "truncated":
        model.write_bytes(good[: len(good) // 2])
    elif how == "random":
        model.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "empty":
        model.write_bytes(b"")
    elif how == "directory":
        model.unlink()
        model.mkdir()


@pytest.mark.parametrize("how", ["no_config", "no_weights", "bad_crc", "truncated", "random", "empty", "directory"])
def test_broken_model_keras_is_exit_2_naming_it(run_copy, invoke, how):
    model = run_copy / "model.keras"
    _break(model, how)
    code, _, err = _export(invoke, run_copy)
    assert code == 2, err
    assert str(model) in err
    _no_traceback(err)


def test_lambda_layer_and_os_system_are_refused_as_unsafe(run_copy, invoke, tmp_path):
    model = run_copy / "model.keras"
    with zipfile.ZipFile(model) as zf:
        config = json.loads(zf.read("config.json"))
    for name, mutate in (
        ("lambda", lambda c: c["config"]["layers"][-1].update(class_name="Lambda")),
        ("os.system", lambda c: c["config"]["layers"][-1].update(module="os", class_name="system")),
    ):
        bad = json.loads(json.dumps(config))
        mutate(bad)
        tmp = tmp_path / f"{name}.keras"
        _rezip(model, tmp, drop="config.json", extra={"config.json": json.dumps(bad)})
        shutil.copy(tmp, model)
        code, _, err = _export(invoke, run_copy)
        assert code == 2 and str(model) in err, err
        assert ("Lambda" in err) if name == "lambda" else ("'os'" in err), err
        _no_traceback(err)


def test_huge_config_in_model_keras_is_refused_without_reading_it(run_copy, invoke, monkeypatch):
    """A 40 MB config.json, stored: the size in the zip directory is enough to refuse it."""
    model = run_copy / "model.keras"
    tmp = model.with_suffix(".orig")
    model.rename(tmp)
    with zipfile.ZipFile(tmp) as zin, zipfile.ZipFile(model, "w", zipfile.ZIP_DEFLATED) as zout:
        zout.writestr("model.weights.h5", zin.read("model.weights.h5"))
        with zout.open("config.json", "w", force_zip64=True) as fh:
            chunk = b" " * (1 << 20)
            for _ in range(40):
                fh.write(chunk)  # deflates to ~40 KB
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(
        zipfile.ZipFile,
        "read",
        lambda self, name, *a: pytest.fail("read it") if name == "config.json" else real_read(self, name, *a),
    )
    code, _, err = _export(invoke, run_copy)
    assert code == 2 and str(model) in err and "41,943,040 bytes" in err, err
    _no_traceback(err)


# -- run manifest ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,words",
    [("{not json", "JSONDecodeError"), ('{"kind": "edgetransfer.run", "schema": 2}', "missing"), ("", "JSON")],
)
def test_broken_run_manifest(run_copy, invoke, content, words):
    (run_copy / "manifest.json").write_text(content)
    code, _, err = _export(invoke, run_copy)
    assert code == 2, err
    assert str(run_copy / "manifest.json") in err and words.lower() in err.lower()
    _no_traceback(err)


def test_manifest_model_outside_the_run_folder_is_refused(run_copy, invoke, tmp_path):
    shutil.copy(run_copy / "model.keras", tmp_path / "elsewhere.keras")
    doc = json.loads((run_copy / "manifest.json").read_text())
    doc["files"]["model"] = "../elsewhere.keras"
    (run_copy / "manifest.json").write_text(json.dumps(doc))
    code, _, err = _export(invoke, run_copy)
    assert code == 2 and "outside the run folder" in err and str(run_copy / "manifest.json") in err, err
    _no_traceback(err)


# -- exported artifacts -----------------------------------------------------------------------------------------------


@pytest.fixture
def art_copy(untrained_exports, tmp_path):
    src = untrained_exports[("tflite", "fp32")].path
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_name(src.name + ".manifest.json"), dst.with_name(dst.name + ".manifest.json"))
    return dst


def _retag(path: Path, members: dict[str, bytes]) -> None:
    """Replace the metadata zip appended to a .tflite with ``members``."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        first = min(i.header_offset for i in zf.infolist())
    flat = data[:first]
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    path.write_bytes(flat + buf.getvalue())


def _meta(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize("how", ["bad_json", "labels_not_utf8", "absurd_size"])
def test_damaged_artifact_metadata(art_copy, invoke, how):
    from edgetransfer.runtime import Classifier

    members = _meta(art_copy)
    if how == "bad_json":
        members["edgetransfer.json"] = b"{not json"
    elif how == "labels_not_utf8":
        members["labels.txt"] = b"\xff\xfe\x00bad"
        meta = json.loads(members["edgetransfer.json"])
        meta.pop("labels", None)
        members["edgetransfer.json"] = json.dumps(meta).encode()
    else:
        meta = json.loads(members["edgetransfer.json"])
        meta["input"]["size"] = 10**9
        members["edgetransfer.json"] = json.dumps(meta).encode()
    _retag(art_copy, members)
    with pytest.raises(EdgeTransferError) as exc:
        Classifier(art_copy)
    assert exc.value.path == str(art_copy) and exc.value.exit_code == 3
    res = subprocess.run(
        [sys.executable, "-m", "edgetransfer.runtime", "bench", art_copy, "--budget-s", "0.05", "--min-runs", "2"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _no_traceback(res.stderr)


def test_fewer_labels_than_outputs_is_refused(art_copy):
    from edgetransfer.runtime import Classifier

    members = _meta(art_copy)
    meta = json.loads(members["edgetransfer.json"])
    meta["labels"] = ["only-one"]
    members["edgetransfer.json"] = json.dumps(meta).encode()
    members["labels.txt"] = b"only-one\n"
    _retag(art_copy, members)
    with pytest.raises(EdgeTransferError, match="label") as exc:
        Classifier(art_copy).classify(np.zeros((32, 32, 3), np.uint8))
    assert exc.value.path == str(art_copy)


def test_huge_zip_appended_to_a_tflite_is_refused_without_reading_it(art_copy, monkeypatch):
    from edgetransfer.runtime import Classifier

    members = _meta(art_copy)
    members["labels.txt"] = b"a\n" * (3 << 20)  # 6 MB, deflates to a few KB
    data = art_copy.read_bytes()
    with zipfile.ZipFile(art_copy) as zf:
        first = min(i.header_offset for i in zf.infolist())
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    art_copy.write_bytes(data[:first] + buf.getvalue())
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *a, **k: pytest.fail("read a member whole"))
    with pytest.raises(EdgeTransferError, match="limit") as exc:
        Classifier(art_copy)
    assert exc.value.path == str(art_copy)


def test_model_of_the_wrong_input_shape_gives_a_clear_error(tmp_path, invoke):
    """A valid .tflite that is not an RGB image classifier (one grey channel)."""
    import keras
    import tensorflow as tf

    from edgetransfer.runtime import Classifier

    inp = keras.Input((16, 16, 1), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp)))
    path = tmp_path / "grey.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    img = write_image(tmp_path / "x.png")
    with pytest.raises(EdgeTransferError) as exc:
        Classifier(path).classify(img)
    assert exc.value.path == str(path) and exc.value.exit_code in (2, 3)
    res = subprocess.run(
        [sys.executable, "-m", "edgetransfer.runtime", "bench", path, "--budget-s", "0.05", "--min-runs", "2"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode in (2, 3) and str(path) in res.stderr, res.stderr
    _no_traceback(res.stderr)
