"""TFLite (LiteRT) export through the TensorFlow converter."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

from .. import _lazy
from ..runtime.base import LABELS_NAME, METADATA_NAME
from . import FormatSpec, register

if TYPE_CHECKING:
    from ..quantization import Calibration, QuantRecipe

SPEC = register(FormatSpec(
    name="tflite", suffix=".tflite", precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
    io_dtypes=("uint8", "int8", "float32"), runtimes=("litert",), exporter=__name__,
    op_reader="edgetransfer.graphops:tflite_ops", metadata_reader="edgetransfer.runtime.base:read_tflite_metadata",
    description="LiteRT flatbuffer (TF converter); int8 is full integer with --io uint8/int8/float32"))


def make_source(model, size: int, layout: str, workdir: Path) -> Source:
    """The exporter hook every format module has: trace ``model`` once for all precisions."""
    return Source(model, workdir)


class Source:
    """The model traced once (a SavedModel in a temporary folder), converted per recipe:
    tracing is most of a conversion's time, so exporting five precisions traces once."""

    def __init__(self, model, workdir: Path):
        self.path = workdir / "saved_model"
        model.export(str(self.path), format="tf_saved_model", verbose=False)

    def converter(self):
        return _lazy.tf().lite.TFLiteConverter.from_saved_model(str(self.path))


def convert(source: Source, recipe: QuantRecipe, calibration: Calibration | None) -> bytes:
    """The flatbuffer for the traced model at ``recipe``'s precision."""
    tf = _lazy.tf()
    conv = source.converter()
    p = recipe.precision
    if p != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if p == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if recipe.needs_calibration:
        samples = calibration.images

        def representative():
            for i in range(len(samples)):
                yield [samples[i:i + 1]]

        conv.representative_dataset = representative
    if p == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[recipe.io_dtype]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    if p == "int16x8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


def with_metadata(flatbuffer: bytes, meta: dict) -> bytes:
    """Embed metadata twice: a flatbuffer ``metadata`` entry named ``edgetransfer`` (for
    tools that read the schema) and an appended zip holding ``edgetransfer.json`` and
    ``labels.txt`` (the TFLite Metadata associated-file layout: the .tflite stays valid,
    and a zip reader finds the files without TensorFlow)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(flatbuffer))
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = "edgetransfer"
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    body = bytes(fbu.convert_object_to_bytearray(model))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(METADATA_NAME, json.dumps(meta, indent=2))
        zf.writestr(LABELS_NAME, "\n".join(meta["labels"]) + "\n")
    return body + _shift_zip(archive.getvalue(), len(body))


def _shift_zip(data: bytes, offset: int) -> bytes:
    """Rewrite a zip's offsets as if ``offset`` bytes came before it (so readers that do not
    scan for the start still find each file)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    out.write(b"\0" * offset)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
    return out.getvalue()[offset:]


def write(source: Source, recipe: QuantRecipe, calibration: Calibration | None, meta: dict, path: Path) -> None:
    path.write_bytes(with_metadata(convert(source, recipe, calibration), meta))
