"""Standard TFLite Metadata (the ``ModelMetadata`` flatbuffer) for an exported image classifier.

Why this route (issue #14): MediaPipe Tasks and the TFLite Task Library read a ``TFLITE_METADATA``
model-metadata buffer holding a ``ModelMetadata`` flatbuffer (schema ``metadata_schema.fbs``, identifier
``M001``) and the associated files from a zip appended to the model. The writers that make it
(``tflite-support``'s ``MetadataPopulator``, MediaPipe's ``metadata_writers``) need a compiled extension,
system libraries or a pinned MediaPipe, and refuse a model that already carries a zip ("already packed").
The schema's flatc-generated Python object API is pure Python over the ``flatbuffers`` package, so we
vendor it (``_metadata_schema_py_generated.py``, Apache-2.0, from the mediapipe 1.2.2 wheel) and build
the metadata with ``ModelMetadataT.Pack`` + ``flatbuffers.Builder``: no offsets computed by hand, and the
model itself is edited with TensorFlow's own ``schema_py_generated`` / ``flatbuffer_utils`` object API.
All associated files go into ONE zip appended to the model, the layout the populator writes
(``tflite_support/metadata/python/metadata.py``: ``_populate_associated_files`` appends a zip of
uncompressed files), so the app side (:mod:`edgetransfer.runtime`) still reads it with :mod:`zipfile`.

The reading side of MediaPipe for an image classifier:
``mediapipe/tasks/cc/vision/utils/image_tensor_specs.cc`` (ImageProperties, NormalizationOptions required
for a float input) and ``mediapipe/tasks/cc/components/processors/classification_postprocessing_graph.cc``
(labels from the output tensor's ``TENSOR_AXIS_LABELS`` associated file).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import flatbuffers
import numpy as np

from . import _metadata_schema_py_generated as md

METADATA_BUFFER_NAME = "TFLITE_METADATA"  # the name MediaPipe / the Task Library look up
FILE_IDENTIFIER = b"M001"
# Every field written here exists since schema 1.0.0 (see the History in metadata_schema.fbs), so parsers
# from 1.0.0 on understand it; tflite-support computes the same with metadata_version.cc.
MIN_PARSER_VERSION = "1.0.0"


class MetadataWriteError(ValueError):
    """The TFLite Metadata could not be built or attached (the export wraps it with the file's name)."""


def _file(name: str, description: str, kind: int) -> md.AssociatedFileT:
    f = md.AssociatedFileT()
    f.name, f.description, f.type = name, description, kind
    return f


def _input_tensor(meta: Mapping, name: str) -> md.TensorMetadataT:
    """RGB image of ``meta['input']['size']``; NormalizationOptions mean 0 / std 1 because the graph
    normalises RGB 0..255 itself (a uint8 / int8 input carries its quantization in the tensor)."""
    size = int(meta["input"]["size"])
    props = md.ImagePropertiesT()
    props.colorSpace = md.ColorSpaceType.RGB
    props.defaultSize = md.ImageSizeT()
    props.defaultSize.width = props.defaultSize.height = size
    content = md.ContentT()
    content.contentPropertiesType = md.ContentProperties.ImageProperties
    content.contentProperties = props
    norm = md.NormalizationOptionsT()
    norm.mean = [float(v) for v in meta["normalization"]["mean"]]
    norm.std = [float(v) for v in meta["normalization"]["std"]]
    unit = md.ProcessUnitT()
    unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
    unit.options = norm
    stats = md.StatsT()
    lo, hi = meta["input"].get("range", [0, 255])
    stats.min, stats.max = [float(lo)], [float(hi)]
    t = md.TensorMetadataT()
    t.name = name
    t.description = (
        f"RGB image {size}x{size}, pixel values {lo}..{hi} ({meta['input']['dtype']}); "
        "the model normalises them itself"
    )
    t.content, t.processUnits, t.stats = content, [unit], stats
    return t


def _output_tensor(meta: Mapping, name: str, labels_name: str) -> md.TensorMetadataT:
    content = md.ContentT()
    content.contentPropertiesType = md.ContentProperties.FeatureProperties
    content.contentProperties = md.FeaturePropertiesT()
    stats = md.StatsT()
    stats.min, stats.max = [0.0], [1.0]
    t = md.TensorMetadataT()
    t.name = name
    t.description = f"Probabilities of the {len(meta['labels'])} classes (softmax)."
    t.content, t.stats = content, stats
    t.associatedFiles = [
        _file(labels_name, "Class labels, one per line, in output order.", md.AssociatedFileType.TENSOR_AXIS_LABELS)
    ]
    return t


def build(meta: Mapping, *, input_name: str, output_name: str, labels_name: str, json_name: str) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) describing an exported classifier.

    Args:
        meta: the export metadata (``edgetransfer.exporter._metadata``): labels, input, normalization,
            backbone, precision, edgetransfer version.
        input_name: name of the input tensor (``image``).
        output_name: name of the output tensor (``probabilities``).
        labels_name: associated file holding the labels (``labels.txt``), attached to the output tensor.
        json_name: associated file holding ``meta`` as JSON (``edgetransfer.json``), attached to the model.
    """
    sub = md.SubGraphMetadataT()
    sub.inputTensorMetadata = [_input_tensor(meta, input_name)]
    sub.outputTensorMetadata = [_output_tensor(meta, output_name, labels_name)]
    model = md.ModelMetadataT()
    model.name = f"{meta['backbone']} image classifier"
    model.description = (
        f"Classifies an RGB image into {len(meta['labels'])} classes "
        f"({meta['precision']} {meta.get('format', 'tflite')}), exported by edgetransfer."
    )
    model.version = str(meta["edgetransfer"])
    model.author = "edgetransfer"
    model.subgraphMetadata = [sub]
    model.associatedFiles = [
        _file(
            json_name,
            "edgetransfer export metadata (JSON): labels, input, normalisation, source run.",
            md.AssociatedFileType.UNKNOWN,
        )
    ]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def parse(buf: bytes) -> md.ModelMetadataT:
    """The object form of a ``ModelMetadata`` flatbuffer (for tests and inspection)."""
    if not md.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise MetadataWriteError(f"not a TFLite ModelMetadata flatbuffer (identifier is not {FILE_IDENTIFIER!r})")
    return md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(buf, 0))


def associated_file_names(model_md: md.ModelMetadataT) -> list[str]:
    """Every associated file the metadata names (model, subgraph and tensor level)."""
    names = [f.name for f in model_md.associatedFiles or []]
    for sub in model_md.subgraphMetadata or []:
        names += [f.name for f in sub.associatedFiles or []]
        for t in [*(sub.inputTensorMetadata or []), *(sub.outputTensorMetadata or [])]:
            names += [f.name for f in t.associatedFiles or []]
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def zip_files(files: Mapping[str, bytes], offset: int) -> bytes:
    """One uncompressed zip of ``files`` whose offsets count the ``offset`` bytes of model before it
    (MediaPipe maps the files straight out of the model buffer, so they must be stored, not deflated;
    readers that do not scan for the zip's start find each file too)."""
    out = io.BytesIO()
    out.write(b"\0" * offset)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)  # reproducible bytes
    return out.getvalue()[offset:]


class _AlignedBuilder(flatbuffers.Builder):
    """A builder that starts every byte vector on a 16-byte boundary.

    TFLite's schema declares ``Buffer.data: [ubyte] (force_align: 16)``, but the flatc-generated Python
    ``BufferT.Pack`` (TF's ``schema_py_generated``) calls ``CreateNumpyVector``, which aligns to the element
    size (1); re-serialising a converted model then leaves weights unaligned and LiteRT / XNNPACK copy
    them at load ("has an unaligned buffer ... Re-export the model to align buffers"). Aligning every
    byte vector (weights, metadata, custom options) only adds padding.
    """

    ALIGN = 16

    def StartVector(self, elemSize, numElems, alignment):
        return super().StartVector(elemSize, numElems, max(alignment, self.ALIGN) if elemSize == 1 else alignment)


def serialize(model) -> bytes:
    """``model`` (a ``tflite schema_py_generated.ModelT``) as .tflite bytes, weights 16-byte aligned
    (``flatbuffer_utils.convert_object_to_bytearray`` with :class:`_AlignedBuilder`)."""
    builder = _AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")  # tflite schema.fbs file_identifier
    return bytes(builder.Output())


def attach(model, metadata: bytes, files: Mapping[str, bytes], extra: Mapping[str, bytes] | None = None) -> bytes:
    """Serialise ``model`` (a ``tflite schema_py_generated.ModelT``) with ``metadata`` in a
    ``TFLITE_METADATA`` buffer, ``extra`` named buffers beside it, and ``files`` zipped after it.

    Raises:
        MetadataWriteError: the model already has a ``TFLITE_METADATA`` entry, or ``metadata`` names an
            associated file that ``files`` lacks (MediaPipe would fail on it at load time).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    missing = set(associated_file_names(parse(metadata))) - set(files)
    if missing:
        raise MetadataWriteError(f"the metadata names associated files {sorted(missing)} that are not given")
    entries = list(model.metadata or [])
    names = {(e.name.decode() if isinstance(e.name, bytes) else e.name) for e in entries}
    for name, data in {METADATA_BUFFER_NAME: metadata, **dict(extra or {})}.items():
        if name in names:
            raise MetadataWriteError(f"the model already has a metadata entry {name!r}")
        buf = schema.BufferT()
        buf.data = np.frombuffer(data, dtype=np.uint8)
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        entries.append(entry)
    model.metadata = entries
    body = serialize(model)
    return body + zip_files(files, len(body))


def name_io(model, input_name: str, output_name: str) -> None:
    """Name the first subgraph's input and output tensors (signature defs point at tensors by index,
    so they stay valid; the converter's names are ``serving_default_<arg>:0`` / ``StatefulPartitionedCall:0``)."""
    sub = model.subgraphs[0]
    if len(sub.inputs) != 1 or len(sub.outputs) != 1:
        raise MetadataWriteError(
            f"expected one input and one output, the model has {len(sub.inputs)} and {len(sub.outputs)}"
        )
    sub.tensors[sub.inputs[0]].name = input_name
    sub.tensors[sub.outputs[0]].name = output_name


def read(model_bytes: bytes) -> md.ModelMetadataT | None:
    """The ``ModelMetadata`` of a .tflite file's bytes, or None (needs TensorFlow's schema; for tests and
    tools, not the app side)."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(model_bytes))
    for e in model.metadata or []:
        if (e.name.decode() if isinstance(e.name, bytes) else e.name) == METADATA_BUFFER_NAME:
            return parse(bytes(np.asarray(model.buffers[e.buffer].data, dtype=np.uint8)))
    return None
