"""Delegate compatibility from the vendors' own tools where they exist (#14): ONNX Runtime's mobile
usability checker for Core ML, LiteRT's GPU analyzer; the profile's op list otherwise."""

from __future__ import annotations

import json


def test_compatibility_names_the_tool_that_answered(invoke, untrained_exports):
    files = [untrained_exports[("tflite", "fp32")].path, untrained_exports[("onnx", "fp32")].path]
    code, out, err = invoke(
        "validate",
        *files,
        "--target",
        "pixel4-gpu",
        "--target",
        "apple-ane",
        "--target",
        "nnapi",
        "--skip-incompatible",
        "--budget-s",
        "0.1",
        "--json",
    )
    assert code == 0, err
    notes = {(r["target"], r["format"]): r["compatibility"]["note"] for r in json.loads(out)["records"]}
    assert "analyzer" in notes[("pixel4-gpu", "tflite")].lower()
    assert "usability" in notes[("apple-ane", "onnx")].lower() or "onnxruntime" in notes[("apple-ane", "onnx")].lower()
    assert "op list" in notes[("nnapi", "tflite")]  # no vendor tool for the TFLite NNAPI delegate here
