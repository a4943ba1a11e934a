"""TFLite (LiteRT) export through the TensorFlow converter, with standard TFLite Metadata."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ... import _lazy
from ...runtime.base import LABELS_NAME, METADATA_NAME, read_tflite_metadata
from . import FormatSpec, register
from .foreign import tflite_precision, tflite_standard_metadata
from .graphops import tflite_ops
from .integer_check import tflite_float_ops

if TYPE_CHECKING:
    from ..quantization import Calibration, QuantRecipe


def make_source(model, size: int, layout: str, workdir: Path, dynamic_batch: bool = False) -> Source:
    """The exporter hook every format module has: trace ``model`` once for all precisions."""
    return Source(model, workdir, dynamic_batch)


INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


class Source:
    """The model traced once (a SavedModel in a temporary folder), converted per recipe:
    tracing is most of a conversion's time, so exporting five precisions traces once.

    The SavedModel has one ``serving_default`` signature ``image`` -> ``probabilities`` (the TFLite
    signature def keeps these names) and a batch of 1 (``shape_signature [1, H, W, 3]``: a static graph
    that delegates and MediaPipe plan once), or a dynamic batch (``-1``) with ``dynamic_batch``.
    """

    def __init__(self, model, workdir: Path, dynamic_batch: bool = False):
        tf = _lazy.tf()
        from keras.export import ExportArchive

        self.path = workdir / "saved_model"
        shape = (None if dynamic_batch else 1, *model.input_shape[1:])
        archive = ExportArchive()
        archive.track(model)
        # The argument's name becomes the signature's input name, the dict key its output name.
        archive.add_endpoint(
            "serving_default",
            lambda image: {OUTPUT_NAME: model(image, training=False)},
            input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
        )
        archive.write_out(str(self.path), verbose=False)

        self.calibrated: dict[str, bytes] = {}  # calibration digest -> calibrated float model (mixed int8)

    def converter(self):
        return _lazy.tf().lite.TFLiteConverter.from_saved_model(str(self.path))

    @classmethod
    def unpacked(cls, path: Path) -> Source:
        """A source whose SavedModel is already at ``path`` (from :func:`source_from_blob`)."""
        self = cls.__new__(cls)
        self.path, self.calibrated = path, {}
        return self


def source_blob(source: Source) -> bytes:
    """The traced SavedModel as one tar (the exporter's memo hook: a second sweep that adds a
    precision to the same weights converts without tracing again)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(source.path, arcname="saved_model")
    return buf.getvalue()


def source_from_blob(blob: bytes, workdir: Path) -> Source:
    """The source :func:`source_blob` packed, unpacked under ``workdir`` (regular files and
    folders only: the memo checked the blob's sha256, and nothing may land outside ``workdir``)."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(workdir, filter="data")
    return Source.unpacked(workdir / "saved_model")


def convert(
    source: Source, recipe: QuantRecipe, calibration: Calibration | None, *, keep_float: Sequence[str] = ()
) -> bytes:
    """The flatbuffer for the traced model at ``recipe``'s precision.

    ``keep_float`` (int8 only): output tensor names of ops left in float (mixed precision, see
    :func:`mixed_int8`).
    """
    if recipe.needs_calibration and calibration is None:
        raise ValueError(f"{recipe.precision} needs calibration images")  # the exporter always passes them
    if keep_float and recipe.precision == "int8" and calibration is not None:
        return mixed_int8(source, recipe, calibration, keep_float)
    tf = _lazy.tf()
    conv = source.converter()
    p = recipe.precision
    if p != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if p == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if recipe.needs_calibration and calibration is not None:
        samples = calibration.images

        def representative():
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        conv.representative_dataset = representative
    if p == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[recipe.io_dtype]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    if p == "int16x8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


def calibrated_model(source: Source, calibration: Calibration) -> bytes:
    """The float model with the calibration ranges recorded (the converter's calibrate-only
    step), computed once per calibration set and source."""
    import hashlib

    tf = _lazy.tf()
    key = hashlib.sha1(calibration.images.tobytes()).hexdigest()
    if key not in source.calibrated:
        conv = source.converter()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        samples = calibration.images
        conv.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # The same two private switches tf.lite.experimental.QuantizationDebugger sets.
        conv.experimental_mlir_quantizer = True
        conv._experimental_calibrate_only = True
        source.calibrated[key] = conv.convert()
    return source.calibrated[key]


def mixed_int8(source: Source, recipe: QuantRecipe, calibration: Calibration, keep_float: Sequence[str]) -> bytes:
    """Full int8 except the ops whose output tensors are named in ``keep_float``, which stay float
    with quantize / dequantize around them: the calibrated model quantized by the MLIR quantizer with
    ``denylisted_nodes``, as ``QuantizationDebugger.get_nondebug_quantized_model`` does, plus the
    recipe's integer input/output type."""
    tf = _lazy.tf()
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.python import util as tfl_util

    io_type = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[recipe.io_dtype]
    # mlir_quantize writes int8 I/O for a uint8 request (measured: MediaPipe then refused the doctored file,
    # "Requested one of these types: uint8/float32, got INT8"); the converter itself gets uint8 I/O by
    # rewriting the interface afterwards (tensorflow/lite/python/util.py modify_model_io_type), as here.
    quantized = tfl_convert.mlir_quantize(
        calibrated_model(source, calibration), fully_quantize=False, denylisted_nodes=list(keep_float)
    )  # float I/O around QUANTIZE / DEQUANTIZE ops, which modify_model_io_type folds into the I/O type
    if io_type != tf.float32:
        quantized = tfl_util.modify_model_io_type(quantized, io_type, io_type)
    return bytes(quantized)


def with_metadata(flatbuffer: bytes, meta: dict) -> bytes:
    """Name the I/O tensors ``image`` / ``probabilities`` and embed the metadata three ways: the standard
    TFLite Metadata (``TFLITE_METADATA``, read by MediaPipe Tasks and the TFLite Task Library), a
    flatbuffer ``metadata`` entry ``edgetransfer`` (our JSON), and one zip appended to the model with the
    associated files ``labels.txt`` and ``edgetransfer.json`` (the .tflite stays valid, and a zip reader
    finds the files without TensorFlow: :func:`edgetransfer.runtime.base.read_tflite_metadata`).

    Raises:
        MetadataWriteError: the metadata could not be built (the export names the file and writes nothing).
    """
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    from . import tflite_metadata as tm

    model = fbu.read_model_from_bytearray(bytearray(flatbuffer))
    tm.name_io(model, INPUT_NAME, OUTPUT_NAME)
    doc = json.dumps(meta, indent=2).encode()
    metadata = tm.build(
        meta, input_name=INPUT_NAME, output_name=OUTPUT_NAME, labels_name=LABELS_NAME, json_name=METADATA_NAME
    )
    files = {LABELS_NAME: ("\n".join(meta["labels"]) + "\n").encode(), METADATA_NAME: doc}
    return tm.attach(model, metadata, files, extra={"edgetransfer": json.dumps(meta).encode()})


def write(
    source: Source,
    recipe: QuantRecipe,
    calibration: Calibration | None,
    meta: dict,
    path: Path,
    *,
    keep_float: Sequence[str] = (),
) -> None:
    path.write_bytes(with_metadata(convert(source, recipe, calibration, keep_float=keep_float), meta))


def rank_sensitivity(
    source: Source, path: Path, calibration: Calibration, *, layout: str, images: int, size_allowance: float
) -> list[str]:
    """Output tensor names of the quantized ops, most error added first: ``QuantizationDebugger``'s
    per-layer ``rmse / scale`` (the quantization debugger guide's metric: ~0.29 is plain rounding
    noise, 1/sqrt(12); more means the layer's ranges or weights quantize badly).

    The format's ``sensitivity_ranker`` (the quantization doctor's): ``images`` of the calibration
    set are run; ``path``, ``layout`` and ``size_allowance`` are not needed here (the names are
    output tensors, which ``keep_float`` takes; TFLite float ops cost little size).
    """
    import csv
    import io
    import math

    tf = _lazy.tf()
    from tensorflow.lite.python import convert as tfl_convert

    debug_model = tfl_convert.mlir_quantize(calibrated_model(source, calibration), enable_numeric_verify=True)
    x = calibration.images[:images]
    dbg = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=bytes(debug_model),
        debug_dataset=lambda: ([x[i : i + 1]] for i in range(len(x))),
    )
    dbg.run()
    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    buf.seek(0)
    scored = []
    for row in csv.DictReader(buf):
        scale = float(row["scale"] or 0)
        if scale > 0:
            scored.append((math.sqrt(float(row["mean_squared_error"])) / scale, row["tensor_name"]))
    return [name for _, name in sorted(scored, reverse=True)]


def _debug_interpreter(content: bytes):
    """A TFLite interpreter that keeps every intermediate tensor (no delegate: XNNPACK would fuse them away)."""
    tf = _lazy.tf()
    interp = tf.lite.Interpreter(
        model_content=content,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    return interp


def _as_float(value, detail: dict):
    """A tensor's real values: integer tensors dequantized with their (per-tensor) scale and zero point."""
    import numpy as np

    scale, zero = detail["quantization"]
    if np.issubdtype(value.dtype, np.integer) and scale:
        return (value.astype(np.float64) - zero) * scale
    return value


def _feed(interp, image):
    """Set the input of ``interp`` to one RGB [0, 255] image, quantized where its input is an integer."""
    import numpy as np

    d = interp.get_input_details()[0]
    scale, zero = d["quantization"]
    x = image[None]
    if np.issubdtype(d["dtype"], np.integer):
        info = np.iinfo(d["dtype"])
        x = np.clip(np.round(x / scale + zero) if scale else x, info.min, info.max)
    interp.set_tensor(d["index"], x.astype(d["dtype"]))


def tensor_diagnosis(source: Source, path: Path, images, *, layout: str, meta: dict) -> list[dict]:
    """The format's ``tensor_diagnosis`` (``edgetransfer quant diagnose``): every activation tensor of the
    int8 file ``path`` against the same tensor of the float conversion of ``source`` (the converter keeps
    the tensor names across precisions; the float file gets ``meta`` so its I/O names match), both run
    without delegates, tensor by tensor. ``fix_float`` is the tensor name (``keep_float`` /
    ``denylisted_nodes`` takes the op's output tensor) where the int8 op is the float op, ``""`` for the
    input/output (de)quantize; ``fix_a16`` is always ``""``: the converter's int16x8 is whole-model only.
    ``layout`` is NHWC here."""
    from ..quantization import QuantRecipe
    from .tensor_stats import TensorStats

    fi = _debug_interpreter(with_metadata(convert(source, QuantRecipe.fp32(), None), meta))
    qi = _debug_interpreter(Path(path).read_bytes())
    fdet = {d["index"]: d for d in fi.get_tensor_details()}
    qdet = {d["index"]: d for d in qi.get_tensor_details()}
    fops = {fdet[o]["name"]: op["op_name"] for op in fi._get_ops_details() for o in op["outputs"]}
    fidx = {d["name"]: i for i, d in fdet.items()}
    matched = [
        (op, o, qdet[o]["name"]) for op in qi._get_ops_details() for o in op["outputs"] if qdet[o]["name"] in fops
    ]
    stats = TensorStats()
    for image in images:
        _feed(fi, image)
        _feed(qi, image)
        fi.invoke()
        qi.invoke()
        for _, o, name in matched:
            stats.add(name, fi.get_tensor(fidx[name]), _as_float(qi.get_tensor(o), qdet[o]))
    rows = []
    for op, _, name in matched:
        same = op["op_name"] == fops[name] and name not in (INPUT_NAME, OUTPUT_NAME)
        fields = {"node": name, "op_type": fops[name], "fix_float": name if same else "", "fix_a16": ""}
        row = stats.row(name, [qdet[i]["name"] for i in op["inputs"] if i >= 0], **fields)
        if row is not None:
            rows.append(row)
    return rows


SPEC = register(
    FormatSpec(
        name="tflite",
        suffix=".tflite",
        precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
        io_dtypes=("uint8", "int8", "float32"),
        runtimes=("litert",),
        exporter=__name__,
        op_reader=tflite_ops,
        metadata_reader=read_tflite_metadata,
        sensitivity_ranker=rank_sensitivity,
        tensor_diagnosis=tensor_diagnosis,
        float_op_reader=tflite_float_ops,
        precision_reader=tflite_precision,
        standard_metadata_reader=tflite_standard_metadata,
        description="LiteRT flatbuffer (TF converter); int8 is full integer with --io uint8/int8/float32",
    )
)
