"""What every exported file carries (issue #14): standard TFLite Metadata, static batch-1 graphs named
``image`` -> ``probabilities``, ONNX files that pass ``check_model(full_check=True)`` with only the opset
domains they use, a slimmed fp32 ONNX, and delegate checks answered by the vendors' tools."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgetransfer.errors import ExportError, UnsupportedError
from edgetransfer.exporter.artifacts import export
from edgetransfer.exporter.formats import _metadata_schema_py_generated as md
from edgetransfer.exporter.formats import delegate_check, tflite_metadata
from edgetransfer.exporter.quantization import QuantRecipe
from edgetransfer.runtime import read_metadata

RECIPES = [QuantRecipe.fp32(), QuantRecipe.fp16(), QuantRecipe.int8(calibration_size=12)]


@pytest.fixture(scope="module")
def arts(untrained_exports):
    """fp32, fp16 and int8 TFLite and ONNX files of ``untrained_run``: {(format, precision): artifact}."""
    return {k: v for k, v in untrained_exports.items() if k[1] in ("fp32", "fp16", "int8")}


def _tflite(arts):
    return [a for (fmt, _), a in arts.items() if fmt == "tflite"]


def _onnx(arts):
    return [a for (fmt, _), a in arts.items() if fmt == "onnx"]


def test_tflite_has_standard_metadata(arts, untrained_run):
    for a in _tflite(arts):
        data = a.path.read_bytes()
        m = tflite_metadata.read(data)
        assert m is not None, a.path
        assert m.name == b"efficientnet_lite0 image classifier" and m.version and m.minParserVersion == b"1.0.0"
        sub = m.subgraphMetadata[0]
        (inp,), (out,) = sub.inputTensorMetadata, sub.outputTensorMetadata
        assert inp.name == b"image" and out.name == b"probabilities"
        assert inp.content.contentPropertiesType == md.ContentProperties.ImageProperties
        assert inp.content.contentProperties.colorSpace == md.ColorSpaceType.RGB
        norm = inp.processUnits[0].options
        assert list(norm.mean) == [0.0] * 3 and list(norm.std) == [1.0] * 3
        assert [(f.name, f.type) for f in out.associatedFiles] == [
            (b"labels.txt", md.AssociatedFileType.TENSOR_AXIS_LABELS)
        ]
        assert [f.name for f in m.associatedFiles] == [b"edgetransfer.json"]
        # ONE zip holds every associated file; the app side still reads it without TensorFlow
        zf = zipfile.ZipFile(io.BytesIO(data))
        assert sorted(zf.namelist()) == ["edgetransfer.json", "labels.txt"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert zf.read("labels.txt").decode().splitlines() == untrained_run.classes
        assert json.loads(zf.read("edgetransfer.json"))["precision"] == a.precision
        assert read_metadata(a.path)["labels"] == untrained_run.classes


def test_tflite_static_batch_and_io_names(arts):
    from ai_edge_litert.interpreter import Interpreter

    for a in _tflite(arts):
        it = Interpreter(model_path=str(a.path))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        assert list(inp["shape_signature"]) == [1, 32, 32, 3] and inp["name"] == "image", a.path
        assert list(out["shape_signature"]) == [1, 3] and out["name"] == "probabilities"
        assert it.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}}
    assert Interpreter(model_path=str(arts[("tflite", "int8")].path)).get_input_details()[0]["dtype"] == np.uint8


def test_tflite_dynamic_batch_option(untrained_run, arts, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgetransfer.exporter.formats import tflite

    source = tflite.Source(untrained_run.load_model(), tmp_path, dynamic_batch=True)
    meta = read_metadata(arts[("tflite", "fp32")].path)
    path = tmp_path / "dyn.tflite"
    tflite.write(source, QuantRecipe.fp32(), None, meta, path)
    it = Interpreter(model_path=str(path))
    assert list(it.get_input_details()[0]["shape_signature"]) == [-1, 32, 32, 3]
    assert tflite_metadata.read(path.read_bytes()) is not None


def test_metadata_failure_names_the_file_and_writes_nothing(untrained_run, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise tflite_metadata.MetadataWriteError("labels missing")

    monkeypatch.setattr(tflite_metadata, "build", boom)
    with pytest.raises(ExportError, match="model_fp32.tflite") as err:
        export(untrained_run, ["tflite"], [QuantRecipe.fp32()], out=tmp_path / "o")
    assert "labels missing" in str(err.value)
    assert list((tmp_path / "o").iterdir()) == []


def test_attach_refuses_metadata_naming_a_missing_file(arts):
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(arts[("tflite", "fp32")].path.read_bytes()))
    meta = read_metadata(arts[("tflite", "fp32")].path)
    buf = tflite_metadata.build(
        meta, input_name="image", output_name="probabilities", labels_name="labels.txt", json_name="edgetransfer.json"
    )
    model.metadata = [e for e in model.metadata if e.name not in (b"TFLITE_METADATA", "TFLITE_METADATA")]
    with pytest.raises(tflite_metadata.MetadataWriteError, match="labels.txt"):
        tflite_metadata.attach(model, buf, {"edgetransfer.json": b"{}"})


def test_onnx_static_names_full_check_and_opsets(arts):
    import onnx

    for a in _onnx(arts):
        onnx.checker.check_model(str(a.path), full_check=True)  # fp16 used to fail: input Cast last
        m = onnx.load(str(a.path))
        dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]
        assert [i.name for i in m.graph.input] == ["image"] and dims(m.graph.input[0]) == [1, 32, 32, 3], a.path
        assert [o.name for o in m.graph.output] == ["probabilities"] and dims(m.graph.output[0]) == [1, 3]
        used = {n.domain for n in m.graph.node} | {""}
        assert {o.domain for o in m.opset_import} <= used, (a.path, [o.domain for o in m.opset_import])


@pytest.mark.slow
def test_onnx_fp32_is_slimmed_and_identical(tiny_run, tiny_exports):
    """On a real backbone (Lite0): the tiny test model has nothing for the slimming to fold."""
    import onnx
    import onnxruntime as ort

    from edgetransfer.exporter.formats.onnx import convert_fp32

    raw = convert_fp32(tiny_run.load_model(), 32, "nhwc")
    slim = onnx.load(str(tiny_exports[("onnx", "fp32")].path))
    assert len(slim.graph.node) < len(raw.graph.node) - 16  # BatchNorm Mul+Add pairs folded into the convs
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )[0]
    assert np.abs(run(raw) - run(slim)).max() <= 1e-5


def test_onnx_dynamic_batch_option(untrained_run):
    import onnxruntime as ort

    from edgetransfer.exporter.formats.onnx import convert_fp32

    m = convert_fp32(untrained_run.load_model(), 32, "nhwc", dynamic_batch=True)
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.zeros((2, 32, 32, 3), np.float32)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"image": x})[0].shape == (2, 3)


def test_delegates_answered_by_vendor_tools(arts):
    for d in ("nnapi", "coreml", "coreml-mlprogram"):
        r = delegate_check.check_delegate(arts[("onnx", "fp32")].path, d)
        assert r.full and r.verdict == "YES" and "onnxruntime" in r.tool, r
    gpu = delegate_check.check_delegate(arts[("tflite", "fp32")].path, "gpu")
    assert gpu.full and gpu.nodes_total >= 5 and "Analyzer" in gpu.tool  # the tiny model has 8 ops
    with pytest.raises(UnsupportedError):
        delegate_check.check_delegate(arts[("tflite", "fp32")].path, "nnapi")


def test_gpu_report_parsing_counts_partitions(arts, monkeypatch):
    import tensorflow as tf

    report = (
        "  Op#0 CONV_2D(T#0) -> [T#1]\n  Op#1 CUSTOM(T#1) -> [T#2]\nGPU COMPATIBILITY WARNING: Not supported\n"
        "  Op#2 ADD(T#2) -> [T#3]\n\nGPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility "
        "issues at nodes 1 with TFLite runtime version 2.21.0\n\nTensors of Subgraph#0\n"
    )
    monkeypatch.setattr(tf.lite.experimental.Analyzer, "analyze", staticmethod(lambda **k: print(report)))
    r = delegate_check.check_delegate(arts[("tflite", "fp32")].path, "gpu")
    assert (r.nodes_total, r.nodes_supported, r.partitions, r.unsupported_ops, r.full) == (3, 2, 2, ("CUSTOM",), False)


def test_cli_dynamic_batch_keeps_a_free_batch_dimension(untrained_run, invoke, tmp_path):
    import json

    from edgetransfer.runtime.litert import interpreter_module

    code, out, err = invoke(
        "export", untrained_run.run_dir, "--precision", "fp32", "--dynamic-batch", "--out", tmp_path, "--json"
    )
    assert code == 0, err
    path = json.loads(out)[0]["path"]
    interp = interpreter_module().Interpreter(model_path=path)
    assert int(interp.get_input_details()[0]["shape_signature"][0]) == -1
    assert json.loads(Path(path + ".manifest.json").read_text())["io"]["batch"] is None
