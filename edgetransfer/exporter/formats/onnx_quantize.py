"""ONNX quantization: static QDQ through ONNX Runtime (or NNCF), the calibration reader, bias correction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ... import _lazy
from .._quiet import quiet_onnxruntime_quantization

if TYPE_CHECKING:
    from ..quantization import Calibration, QuantRecipe

if TYPE_CHECKING:
    from ..quantization import Calibration, QuantRecipe


class _Reader:
    """ONNX Runtime CalibrationDataReader over the calibration images, one at a time."""

    def __init__(self, name: str, images: np.ndarray, layout: str):
        self.name = name
        self.images = images.transpose(0, 3, 1, 2) if layout == "nchw" else images
        self.i = 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.images[self.i - 1 : self.i], dtype=np.float32)}

    def rewind(self):
        self.i = 0


def prepare(fp32_path: Path, prep: Path) -> None:
    """ONNX Runtime's pre-processing before static quantization (shape inference, graph
    optimisation); node names of ``nodes_to_exclude`` refer to this graph."""
    q = _lazy.require("onnxruntime.quantization", extra="runtime")
    q.shape_inference.quant_pre_process(str(fp32_path), str(prep), skip_symbolic_shape=True)


def _quantize(
    fp32_path: Path,
    out: Path,
    recipe: QuantRecipe,
    calibration: Calibration | None,
    layout: str,
    keep_float: Sequence[str] = (),
) -> None:
    q = _lazy.require("onnxruntime.quantization", extra="runtime")
    onnx = _lazy.require("onnx")
    quiet_onnxruntime_quantization()  # its prints and root-logger warnings: debug records (issue #38)
    if recipe.precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True), str(out))
    elif recipe.precision == "dynamic":
        q.quantize_dynamic(str(fp32_path), str(out), weight_type=q.QuantType.QUInt8)
    else:  # int8, static QDQ
        if calibration is None:
            raise ValueError("int8 needs calibration images")  # the exporter always passes them
        prep = out.with_name(out.stem + ".prep.onnx")
        prepare(fp32_path, prep)
        name = onnx.load(str(prep)).graph.input[0].name
        floats = [n for n in keep_float if not n.startswith(A16)]
        wide = [n[len(A16) :] for n in keep_float if n.startswith(A16)]
        if "nncf_bias_correction" in recipe.options:
            if wide or len(recipe.options) > 1:  # ORT's extra_options do not reach NNCF's quantizer
                raise ValueError("nncf_bias_correction takes no other option and no a16: tensors")
            _nncf_quantize(prep, out, calibration, layout, floats)
            prep.unlink(missing_ok=True)
            return
        extra = _extra_options(q, recipe.options, name, wide)
        method = {
            "minmax": q.CalibrationMethod.MinMax,
            "entropy": q.CalibrationMethod.Entropy,
            "percentile": q.CalibrationMethod.Percentile,
        }[recipe.method]
        # U8S8 (uint8 activations, int8 weights): measured on x86, the S8S8 default of some
        # tools runs slower than fp32, U8S8 faster (issue #6 measurements).
        q.quantize_static(
            str(prep),
            str(out),
            _Reader(name, calibration.images, layout),
            quant_format=q.QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QUInt8 if "u8u8" in recipe.options else q.QuantType.QInt8,
            calibrate_method=method,
            reduce_range="reduce_range" in recipe.options,  # 7-bit weights (formats/onnx.py OPTIONS)
            nodes_to_exclude=floats,  # mixed precision: these nodes stay float
            extra_options=extra,  # and these activations are 16-bit, plus the recipe's options
        )
        if "bias_correction" in recipe.options:
            correct_biases(out, prep, calibration, layout)
        prep.unlink(missing_ok=True)


BIAS_CORRECTION_IMAGES = 32  # per-channel input means: a mean over 32 images is stable to ~1/sqrt(32)


def correct_biases(qpath: Path, prep: Path, calibration: Calibration, layout: str) -> int:
    """Empirical bias correction of the QDQ file ``qpath`` in place (see :data:`OPTIONS`): for each Conv
    (dense or depthwise) and Gemm whose weights are int8 through a DequantizeLinear, the bias (int32 at
    scale ``s_in * s_w``, or float) minus ``sum((W_q - W) * mean(x))`` per output channel, ``W`` the float
    weights of ``prep`` and ``mean(x)`` the per-channel mean of the layer's float input over the calibration
    images (padding ignored). Returns how many biases were corrected."""
    onnx = _lazy.require("onnx")
    nph = onnx.numpy_helper
    q, f = onnx.load(str(qpath)), onnx.load(str(prep))
    qinit = {i.name: i for i in q.graph.initializer}
    finit = {i.name: nph.to_array(i) for i in f.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    layers = []  # (node, float input tensor, dequantized weights, float weights, bias initializer, bias scale)
    for node in q.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        wdq, bdq = producer.get(node.input[1]), producer.get(node.input[2])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in qinit:
            continue
        wname = wdq.input[0].removesuffix("_quantized")
        if wname not in finit:
            continue
        scale = nph.to_array(qinit[wdq.input[1]]).astype(np.float64)
        zp = nph.to_array(qinit[wdq.input[2]]).astype(np.float64) if len(wdq.input) > 2 else 0.0
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
        w_int = nph.to_array(qinit[wdq.input[0]]).astype(np.float64)
        shape = [1] * w_int.ndim
        if scale.ndim:
            shape[axis] = -1
        w_q = (w_int - np.reshape(zp, shape)) * np.reshape(scale, shape)
        if bdq is not None and bdq.op_type == "DequantizeLinear" and bdq.input[0] in qinit:
            bias, bscale = qinit[bdq.input[0]], nph.to_array(qinit[bdq.input[1]]).astype(np.float64)
        elif node.input[2] in qinit:
            bias, bscale = qinit[node.input[2]], None  # a float bias (float_bias)
        else:
            continue
        x = node.input[0].removesuffix("_DequantizeLinear_Output")
        layers.append((node, x, w_q, finit[wname].astype(np.float64), bias, bscale))
    if not layers:
        return 0
    means = _channel_means(onnx, f, sorted({x for _, x, *_ in layers}), calibration, layout, prep)
    fixed = 0
    for node, x, w_q, w, bias, bscale in layers:
        if x not in means:
            continue
        shift = _output_shift(node, w_q - w, means[x])
        if shift is None:
            continue
        b = nph.to_array(bias)
        if bscale is None:
            new = (b.astype(np.float64) - shift).astype(b.dtype)
        else:
            info = np.iinfo(np.int32)
            new = np.clip(np.round(b.astype(np.float64) - shift / bscale), info.min, info.max).astype(np.int32)
        bias.CopyFrom(nph.from_array(new, bias.name))
        fixed += 1
    onnx.save(q, str(qpath))
    return fixed


def _output_shift(node, dw: np.ndarray, mean_x: np.ndarray) -> np.ndarray | None:
    """The mean output error per channel that weight error ``dw`` adds for input channel means ``mean_x``."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Gemm":
        trans_b = attrs["transB"].i if "transB" in attrs else 0
        return (dw @ mean_x) if trans_b else (mean_x @ dw)
    group = attrs["group"].i if "group" in attrs else 1
    per_tap = dw.sum(axis=tuple(range(2, dw.ndim)))  # [out, in/group]: padding ignored
    if group == 1 and per_tap.shape[1] == len(mean_x):
        return per_tap @ mean_x
    if group == len(mean_x) == per_tap.shape[0] and per_tap.shape[1] == 1:  # depthwise
        return per_tap[:, 0] * mean_x
    return None


def _channel_means(onnx, fmodel, names, calibration: Calibration, layout: str, prep: Path) -> dict:
    """Per-channel means (axis 1, NCHW inside the graph) of the float tensors ``names`` over the first
    :data:`BIAS_CORRECTION_IMAGES` calibration images."""
    ort = _lazy.require("onnxruntime")
    # one thread: the corrected biases, and so the file's bytes, are the same on every replay
    sess = _session_with_outputs(onnx, ort, fmodel, names, prep.with_name(prep.stem + ".means.onnx"), threads=1)
    x = calibration.images[:BIAS_CORRECTION_IMAGES]
    x = x.transpose(0, 3, 1, 2) if layout == "nchw" else x
    iname, outs = sess.get_inputs()[0].name, [o.name for o in sess.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    for i in range(len(x)):
        got = dict(zip(outs, sess.run(None, {iname: np.ascontiguousarray(x[i : i + 1], np.float32)}), strict=True))
        for t in names:
            a = np.asarray(got[t], np.float64)
            m = a.mean(axis=tuple(d for d in range(a.ndim) if d != 1)) if a.ndim >= 2 else a
            sums[t] = sums.get(t, 0) + m
    prep.with_name(prep.stem + ".means.onnx").unlink(missing_ok=True)
    return {t: v / len(x) for t, v in sums.items()}


def _extra_options(q, options: Sequence[str], input_name: str, wide: Sequence[str]) -> dict:
    """ONNX Runtime's ``extra_options`` for the recipe's :data:`OPTIONS` and the 16-bit tensors ``wide``."""
    overrides: dict = {t: [{"quant_type": q.QuantType.QUInt16}] for t in wide}
    extra: dict = {}
    if "exact_input_scale" in options:
        overrides[input_name] = [{"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.uint8)}]
    if "float_output" in options:
        extra["OpTypesToExcludeOutputQuantization"] = ["Softmax"]
    if "moving_average_ranges" in options:
        extra["CalibMovingAverage"] = True
    if "asymmetric_weights" in options:
        extra["WeightSymmetric"] = False
    if "float_bias" in options or "float_bias_exact_weights" in options:
        extra["QuantizeBias"] = False
    if "float_bias_exact_weights" in options:
        extra["QDQDisableWeightAdjustForInt32Bias"] = True
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    return extra


def _nncf_quantize(prep: Path, out: Path, calibration: Calibration, layout: str, floats: Sequence[str]) -> None:
    """NNCF's post-training quantization of the pre-processed graph (fast bias correction on, the ``mixed``
    preset: asymmetric uint8 activations and symmetric int8 weights, the U8S8 pair ONNX Runtime fuses on x86),
    ``floats`` nodes left in float."""
    nncf = _lazy.require("nncf", extra="quant")
    onnx = _lazy.require("onnx")
    model = onnx.load(str(prep))
    name = model.graph.input[0].name
    x = calibration.images.transpose(0, 3, 1, 2) if layout == "nchw" else calibration.images
    items = [{name: np.ascontiguousarray(x[i : i + 1], dtype=np.float32)} for i in range(len(x))]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(items),
        fast_bias_correction=True,
        ignored_scope=nncf.IgnoredScope(names=list(floats), validate=False) if floats else None,
    )
    onnx.save(quantized, str(out))


# ONNX Runtime has no 16-bit-activation integer kernels on CPU: int16x8 is TFLite only. Single
# tensors can still be kept at 16 bits in an int8 file (``keep_float`` entries ``a16:<tensor>``,
# ``TensorQuantOverrides``): their Q/DQ pairs are com.microsoft uint16 ops (opset 17 has no 16-bit
# Q/DQ) and the ops next to them run in float, so each costs latency (the doctor measures it).
A16 = "a16:"


def _session_with_outputs(onnx, ort, model, names: Sequence[str], path: Path, threads: int = 0):
    """An ONNX Runtime session that also outputs the tensors ``names`` (float intermediates); ``threads``
    1 for outputs that must be the same bit for bit on every run (a multi-threaded reduction may not be)."""
    have = {o.name for o in model.graph.output}
    for t in names:
        if t not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    onnx.save(model, str(path))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
