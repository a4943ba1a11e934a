"""Export: every precision of a trained run, metadata inside, refusals up front, atomic writes."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from edgetransfer import data as data_lib
from edgetransfer import images
from edgetransfer.errors import ExportError, UnsupportedError
from edgetransfer.exporter.artifacts import ExportedArtifact, export
from edgetransfer.exporter.quantization import QuantRecipe, calibration_set
from edgetransfer.runtime import Classifier, load_session, read_metadata

ALL = [
    QuantRecipe.fp32(),
    QuantRecipe.fp16(),
    QuantRecipe.dynamic(),
    QuantRecipe.int8(calibration_size=12),
    QuantRecipe.int16x8(calibration_size=12),
]


@pytest.fixture(scope="module")
def run(untrained_run):
    """Mechanics only (files, metadata, refusals, the CLI): the tiny untrained run is enough."""
    return untrained_run


@pytest.fixture(scope="module")
def arts(untrained_exports):
    return list(untrained_exports.values())  # ALL, exported once per session


@pytest.fixture(scope="module")
def val(run):
    ds = data_lib.load(run.manifest.data.root, val_split=0.3)
    files = ds.split("val")
    x = np.stack([images.load_array(f.path, 32) for f in files]).astype(np.float32)
    return x, np.asarray(run.load_model().predict(x, verbose=0))


@pytest.fixture(scope="module")
def trained_arts(tiny_run, tmp_path_factory):
    return export(tiny_run, ["all"], ALL, out=tmp_path_factory.mktemp("all-precisions"))


@pytest.fixture(scope="module")
def trained_val(tiny_run):
    ds = data_lib.load(tiny_run.manifest.data.root, val_split=0.3)
    x = np.stack([images.load_array(f.path, 32) for f in ds.split("val")]).astype(np.float32)
    return x, np.asarray(tiny_run.load_model().predict(x, verbose=0))


@pytest.mark.slow
def test_every_format_and_precision_exports_and_runs(trained_arts, trained_val):
    """On the trained Lite0: file size ratios and agreement need real weights (the tiny model's
    files are mostly metadata); the tiny model's agreement is tests/unit/exporter/test_keras_parity.py."""
    arts, val = trained_arts, trained_val
    got = {(a.format, a.precision) for a in arts}
    assert got == {("tflite", p) for p in ("fp32", "fp16", "dynamic", "int8", "int16x8")} | {
        ("onnx", p) for p in ("fp32", "fp16", "dynamic", "int8")
    }
    x, ref = val
    by = {(a.format, a.precision): a for a in arts}
    for a in arts:
        out = np.concatenate([load_session(a.path).run(x[i : i + 1]) for i in range(len(x))])
        assert out.shape == ref.shape
        agree = (out.argmax(1) == ref.argmax(1)).mean()
        if a.precision == "fp32":
            assert np.abs(out - ref).max() <= 1e-4, a.path
        if a.precision == "fp16":
            assert agree >= 0.995, a.path
    for fmt in ("tflite", "onnx"):
        fp32 = by[(fmt, "fp32")].size_bytes
        assert fp32 / by[(fmt, "fp16")].size_bytes > 1.8 and fp32 / by[(fmt, "int8")].size_bytes > 3.0


def test_metadata_and_manifests(arts, run):
    for a in arts:
        meta = read_metadata(a.path)
        assert meta["labels"] == run.classes == ["blue", "green", "red"]
        assert meta["input"]["size"] == 32 and meta["normalization"]["model_applies"]["mean"] == [127.0] * 3
        again = ExportedArtifact.from_manifest(a.path)
        assert again.sha256 == a.sha256 and again.size_bytes == a.path.stat().st_size
    index = json.loads((arts[0].path.parent / "manifest.json").read_text())
    assert sorted(index["artifacts"]) == sorted(a.path.name for a in arts)
    assert index["calibration"]["count"] == 12 and "class-balanced" in index["calibration"]["source"]
    int8 = load_session(next(a.path for a in arts if a.format == "tflite" and a.precision == "int8"))
    assert int8.input_spec.dtype == "uint8"  # raw camera bytes go straight in


@pytest.mark.slow
def test_classifier_classifies_like_keras(trained_arts, tmp_path):
    """A red image is red only to a trained model (tests/unit/exporter/test_keras_parity.py: the mechanics)."""
    arts = trained_arts
    img = write_image(tmp_path / "r.png", size=(40, 40), color=(220, 40, 40))
    for a in arts:
        if a.precision in ("fp32", "int8"):
            top = Classifier(a.path).classify(img, top=3)
            assert [t[0] for t in top][0] == "red" and abs(sum(s for _, s in top) - 1) < 0.05


def test_cli_json_and_nchw_layout(run, invoke, tmp_path):
    code, out, err = invoke(
        "export",
        run.run_dir,
        "--format",
        "onnx",
        "--precision",
        "fp32",
        "--layout",
        "nchw",
        "--out",
        tmp_path / "o",
        "--json",
    )
    assert code == 0, err
    row = json.loads(out)[0]
    assert {"path", "format", "precision", "size_bytes", "sha256"} <= set(row)
    import onnx

    model = onnx.load(row["path"])
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 32, 32]
    transposes = sum(1 for n in model.graph.node if n.op_type == "Transpose")
    assert transposes <= 2, f"{transposes} Transpose nodes"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--format", "onnx", "--precision", "int16x8"], "onnx cannot do precision int16x8"),
        (["--format", "onnx", "--precision", "int8", "--io", "uint8"], "--io uint8 is tflite only"),
        (["--precision", "fp16", "--io", "int8"], "needs full-integer int8"),
    ],
)
def test_impossible_combinations_refused_up_front(run, invoke, tmp_path, args, needle):
    code, _, err = invoke("export", run.run_dir, *args, "--out", tmp_path / "o")
    assert code == 2 and needle in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_converter_crash_leaves_nothing_half_written(run, tmp_path, monkeypatch, invoke):
    from edgetransfer.exporter.formats import tflite

    def boom(*a, **k):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(tflite, "convert", boom)
    code, _, err = invoke("export", run.run_dir, "--precision", "fp16", "--out", tmp_path / "o")
    assert code == 3 and "model_fp16.tflite" in err and "converter exploded" in err
    assert [p.name for p in (tmp_path / "o").iterdir()] == []
    with pytest.raises(ExportError):
        export(run, ["tflite"], [QuantRecipe.fp16()], out=tmp_path / "o2")


def test_calibration_sources(run, tmp_path, invoke):
    auto = calibration_set(run.manifest, "auto", 6)
    labels = [Path(f).parent.name for f in auto.files]
    assert sorted(labels) == ["blue", "blue", "green", "green", "red", "red"]  # class-balanced
    assert auto.images.shape == (6, 32, 32, 3) and auto.images.max() > 100  # raw [0, 255] pixels
    flat = tmp_path / "calib"
    for i in range(4):
        write_image(flat / f"{i}.jpg", seed=i)
    assert len(calibration_set(run.manifest, flat, 10).files) == 4
    code, _, err = invoke(
        "export", run.run_dir, "--precision", "int8", "--calibration", tmp_path / "none", "--out", tmp_path / "o"
    )
    assert code == 2 and "calibration folder not found" in err


def test_recipe_presets_are_validated():
    assert QuantRecipe.int8().io_dtype == "uint8" and QuantRecipe.int8().needs_calibration
    with pytest.raises(UnsupportedError):
        QuantRecipe("fp16", "uint8")
    with pytest.raises(Exception, match="calibration method"):
        QuantRecipe.int8(method="magic")
