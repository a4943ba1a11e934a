"""Fast layer, in the style of keras' export tests: every format module exports the tiny
untrained model (``untrained_run`` in conftest.py) and the file is checked against Keras'
own output at a tolerance: tight for float32, looser for each quantized precision."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetransfer.exporter.artifacts import ExportedArtifact
from edgetransfer.runtime import Classifier, load_session, read_metadata

# Max |probability - Keras probability| on the held-out images. float32 differs by rounding
# only; fp16 weights by ~1e-3 relative; int8/int16x8 by the quantization steps of the input,
# activations and the softmax output (1/256 per step, a few steps through the graph).
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3, "dynamic": 3e-2, "int8": 6e-2, "int16x8": 3e-2}


@pytest.fixture(scope="module")
def exported(untrained_exports) -> dict[tuple[str, str], ExportedArtifact]:
    return untrained_exports


def _probs(path, x: np.ndarray) -> np.ndarray:
    session = load_session(path)
    return np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])


def test_every_format_and_precision_is_exported(exported):
    assert set(exported) == {("tflite", p) for p in TOLERANCE} | {
        ("onnx", p) for p in ("fp32", "fp16", "dynamic", "int8")
    }


@pytest.mark.parametrize(
    "fmt,precision",
    [("tflite", p) for p in TOLERANCE] + [("onnx", p) for p in ("fp32", "fp16", "dynamic", "int8")],
)
def test_the_file_agrees_with_keras(exported, untrained_images, fmt, precision):
    x, ref = untrained_images
    art = exported[(fmt, precision)]
    got = _probs(art.path, x)
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err <= TOLERANCE[precision], f"{art.path.name}: max |p - keras| = {err:.2e}"
    assert np.allclose(got.sum(1), 1.0, atol=2e-2)


def test_metadata_and_manifest_travel_with_every_file(exported, untrained_run):
    for art in exported.values():
        meta = read_metadata(art.path)
        assert meta["labels"] == untrained_run.classes if "labels" in meta else True
        again = ExportedArtifact.from_manifest(art.path)
        assert (again.format, again.precision, again.sha256) == (art.format, art.precision, art.sha256)
    index = json.loads((next(iter(exported.values())).path.parent / "manifest.json").read_text())
    assert index  # the export index is a JSON document beside the files


def test_classifier_reads_the_labels_and_preprocesses_like_training(exported, untrained_run, untrained_images):
    x, ref = untrained_images
    clf = Classifier(exported[("tflite", "fp32")].path)
    image = x[0].astype(np.uint8)
    top = clf.classify(image, top=3)
    assert [name for name, _ in top] == [untrained_run.classes[i] for i in np.argsort(-ref[0])]
    assert np.allclose(clf.probabilities(image), ref[0], atol=1e-5)


def test_tflm_bundle_of_the_int8_file_runs_on_the_tflm_kernels(exported, untrained_images, tmp_path):
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed")
    from edgetransfer.exporter.formats import tflm
    from edgetransfer.runtime import tflm as tflm_runtime
    from edgetransfer.runtime import tflm_ops

    int8 = exported[("tflite", "int8")]
    folder = tmp_path / "tflm"
    bundle = tflm.export_tflm(int8.path, folder)  # the TFLMBundle record written; names relative to folder
    doc = json.loads((folder / "tflm_manifest.json").read_text())
    assert doc["kind"] == "edgetransfer.tflm" and doc["arena_bytes"] == bundle.arena_bytes > 0
    assert bundle.flash_bytes == int8.size_bytes and (folder / bundle.tflite).read_bytes() == int8.path.read_bytes()
    assert set(bundle.ops) == set(tflm_ops.required_ops(int8.path))
    assert "g_model" in (folder / bundle.cc).read_text() and "g_model" in (folder / bundle.header).read_text()
    x, ref = untrained_images
    session = tflm_runtime.TFLM().load(folder / bundle.tflite)
    got = np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])
    assert float(np.abs(got - ref).max()) <= TOLERANCE["int8"]
