"""The format and runtime registries carry capabilities (#24): every entry declares them, every
code reference resolves, and the code that used to branch on names asks the registry instead.

The per-entry contracts are templates run over every registered name (tests/registry_templates.py,
test_format_registry.py, test_runtime_registry.py); this file keeps the cross-entry checks.
Fast: no model is trained or exported here."""

from __future__ import annotations

import ast
import dataclasses
import sys
import types
from pathlib import Path

import pytest

import edgetransfer
from edgetransfer import runtime
from edgetransfer.errors import ConfigError
from edgetransfer.exporter import formats
from edgetransfer.runtime import spec as runtime_spec
from edgetransfer.runtime.base import read_metadata

LAYOUTS = {"nhwc", "nchw"}
GRANULARITIES = {"per_channel", "per_tensor"}


def test_capabilities_answer_what_the_exporter_and_doctor_asked_by_name():
    onnx, tflite = formats.get("onnx"), formats.get("tflite")
    assert onnx.layout_for("nchw") == "nchw" and tflite.layout_for("nchw") == "nhwc"
    assert onnx.calibration_methods[0] == "minmax" and len(onnx.calibration_methods) == 3
    assert tflite.calibration_methods == ("minmax",) and tflite.weight_granularities == ("per_channel",)
    assert "onnxruntime" in onnx.converters and not tflite.converters
    assert tflite.sensitivity_ranker_fn() is not onnx.sensitivity_ranker_fn() is not None
    assert formats.get("tflm").sensitivity_ranker_fn() is None


def test_tflm_is_a_microcontroller_runtime():
    spec = runtime_spec.get("tflm")
    assert spec.kind == "mcu" and spec.own_accuracy and spec.measures == {runtime_spec.MEMORY}
    assert all(ref.startswith("edgetransfer.runtime.tflm:") for ref in (spec.factory, spec.ops, spec.memory))
    assert list(runtime.RUNTIMES) == list(runtime_spec.names())


def test_a_provider_only_where_the_runtime_takes_it():
    with pytest.raises(ConfigError, match="'cuda' is an ONNX Runtime setting; litert runs on the CPU") as e:
        runtime.get_runtime("litert", "cuda")
    assert "runtime: onnxruntime" in (e.value.fix or "")
    with pytest.raises(ConfigError, match="unknown ONNX Runtime provider 'bogus'"):
        runtime.get_runtime("onnxruntime", "bogus")
    with pytest.raises(ConfigError, match="did you mean 'litert'"):
        runtime.get_runtime("litrt")


def test_read_metadata_dispatches_through_the_registry(tmp_path, monkeypatch):
    reader = types.ModuleType("et_test_reader")
    reader.read = lambda path: {"labels": ["a"], "read": Path(path).name}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "et_test_reader", reader)
    formats.names()  # load the registry before adding to it
    fake = dataclasses.replace(
        formats.get("onnx"), name="fake", suffix=".fake", metadata_reader=reader.read, in_all=False
    )
    monkeypatch.setitem(formats._REGISTRY, "fake", fake)
    assert read_metadata(tmp_path / "m.fake") == {"labels": ["a"], "read": "m.fake"}
    plain = tmp_path / "other.tflite"
    plain.write_bytes(b"TFL3 not exported by edgetransfer")
    assert read_metadata(plain) == {}
    with pytest.raises(ConfigError, match="packages a tflite model"):
        read_metadata(tmp_path / "model_data.cc")
    with pytest.raises(ConfigError, match="no format for '.xyz'"):
        read_metadata(tmp_path / "m.xyz")


def _name_comparisons(path: Path) -> list[int]:
    names = {*formats.names(), *runtime_spec.names(), *(formats.get(n).suffix for n in formats.names())}
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for c in [node.left, *node.comparators]:
                elts = c.elts if isinstance(c, (ast.Tuple, ast.List, ast.Set)) else [c]
                if any(isinstance(e, ast.Constant) and e.value in names for e in elts):
                    lines.append(node.lineno)
    return lines


def test_exporter_and_quantization_never_compare_a_format_or_runtime_name():
    pkg = Path(edgetransfer.__file__).parent
    files = [*sorted((pkg / "exporter").glob("*.py")), *sorted((pkg / "exporter" / "quantization").glob("*.py"))]
    found = {str(p.relative_to(pkg)): _name_comparisons(p) for p in files}
    assert not {k: v for k, v in found.items() if v}
