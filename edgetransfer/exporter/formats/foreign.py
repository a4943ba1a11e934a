"""What a file from another tool is, read from the file itself: its precision, and the standard
metadata other tools write (TFLite Metadata). Registered as the formats' ``precision_reader`` and
``standard_metadata_reader`` (``edgetransfer import`` of a foreign file asks the registry)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from ... import _lazy

log = logging.getLogger("edgetransfer")


def _decoded(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")


def tflite_standard_metadata(path: Path) -> dict:
    """Labels (the output's ``TENSOR_AXIS_LABELS`` file) and normalisation from the standard TFLite Metadata
    (``TFLITE_METADATA``, what Model Maker and MediaPipe models carry); ``{}`` without it."""
    from . import _metadata_schema_py_generated as md
    from . import tflite_metadata as tm

    try:
        found = tm.read(path.read_bytes())
    except Exception as exc:  # a flatbuffer that is not the schema: no metadata we can use
        log.debug("no readable TFLite Metadata in %s: %s", path, exc)
        return {}
    if found is None or not found.subgraphMetadata:
        return {}
    sub = found.subgraphMetadata[0]
    out: dict = {}
    for t in sub.inputTensorMetadata or []:
        for unit in t.processUnits or []:
            if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions and unit.options is not None:
                out["normalization"] = {"mean": list(unit.options.mean), "std": list(unit.options.std)}
    names = [
        _decoded(f.name)
        for t in sub.outputTensorMetadata or []
        for f in t.associatedFiles or []
        if f.type == md.AssociatedFileType.TENSOR_AXIS_LABELS
    ]
    if names:
        try:
            with zipfile.ZipFile(path) as zf:
                info = zf.getinfo(names[0])
                if info.file_size <= 4 << 20:  # the same cap as runtime.base.MAX_METADATA_BYTES
                    out["labels"] = [s.strip() for s in zf.read(info).decode("utf-8").splitlines() if s.strip()]
        except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as exc:
            log.warning("WARNING: %s names labels in %s but they cannot be read (%s)", path.name, names[0], exc)
    out["name"] = _decoded(found.name)
    return out


def onnx_precision(path: Path) -> str:
    """``int8``, ``fp16`` or ``fp32`` from an .onnx file's initializers and ops."""
    onnx = _lazy.require("onnx")
    m = onnx.load(str(path), load_external_data=False)
    kinds = {t.data_type for t in m.graph.initializer} | {
        a.t.data_type for n in m.graph.node for a in n.attribute if a.HasField("t")
    }
    ops = {n.op_type for n in m.graph.node}
    if ops & {"QuantizeLinear", "QLinearConv", "MatMulInteger", "ConvInteger"} or kinds & {2, 3}:
        return "int8"  # onnx.TensorProto: UINT8 = 2, INT8 = 3, FLOAT16 = 10
    return "fp16" if 10 in kinds else "fp32"


def tflite_precision(path: Path) -> str:
    """``int8``, ``int16x8``, ``fp16`` or ``fp32`` from a .tflite file's tensor types."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(path.read_bytes()))
    types = {t.type for sub in model.subgraphs for t in sub.tensors}
    # tflite schema.fbs TensorType: FLOAT16 = 1, UINT8 = 3, INT16 = 7, INT8 = 9
    if 7 in types and 9 in types:
        return "int16x8"
    if types & {3, 9}:
        return "int8"
    return "fp16" if 1 in types else "fp32"
