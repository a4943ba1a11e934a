"""ONNX export through tf2onnx, then ONNX Runtime quantization (dynamic, static QDQ, fp16)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import _lazy
from . import FormatSpec, onnx_graph, register

if TYPE_CHECKING:
    from ..quantization import Calibration, QuantRecipe

# ONNX Runtime has no 16-bit-activation integer kernels on CPU: int16x8 is TFLite only. Single
# tensors can still be kept at 16 bits in an int8 file (``keep_float`` entries ``a16:<tensor>``,
# ``TensorQuantOverrides``): their Q/DQ pairs are com.microsoft uint16 ops (opset 17 has no 16-bit
# Q/DQ) and the ops next to them run in float, so each costs latency (the doctor measures it).
A16 = "a16:"
# The int8 writer's options (``QuantRecipe.options``), each what ONNX Runtime's quantizer (or NNCF) offers
# against int8 error that costs less than float (onnxruntime/quantization/quantize.py, ``extra_options``);
# the doctor tries them in this order before 16-bit activations and float ops (issue 27).
OPTIONS = {
    # Best first, as measured on digits Lite0 96 / 64 px (benchmarks/quant_doctor.py): the int8 weights are
    # where those cases lose (issue 27's diagnosis). Empirical bias correction (Nagel et al. 2019, "Data-Free
    # Quantization Through Weight Equalization and Bias Correction", sec. 4.2; NNCF's FastBiasCorrection):
    # each Conv/Gemm bias minus the mean output error its int8 weights add, E[(W_q - W) x], from the
    # calibration images' per-channel input means; ORT's fused U8S8 graph kept (output SNR +4.4 / +5.8 dB).
    "bias_correction": "biases corrected for the mean error the int8 weights add (empirical bias correction)",
    "moving_average_ranges": "min/max ranges as a moving average over the calibration images",
    "float_output": "Softmax output left in float (no 1/255 rounding of the probabilities)",
    # ONNX Runtime widens a channel's int8 weight scale (15x seen on digits Lite0 block15) when the int32
    # bias scale s_in * s_w would be too small; with float biases that widening is not needed
    "float_bias_exact_weights": "float biases, weight scales not widened for an int32 bias",
    # the model input holds whole pixel values 0..255: uint8 with scale 1, zero point 0 carries them exactly,
    # where a calibrated range may clip or round them (calibration already finds 0..255 on these cases)
    "exact_input_scale": "input quantized with scale 1 (exact for 0..255 pixels)",
    "asymmetric_weights": "int8 weights with a zero point per channel (WeightSymmetric=False)",
    "float_bias": "biases kept in float (QuantizeBias=False)",
    # NNCF's post-training quantization with its own FastBiasCorrection (nncf/quantization/algorithms/
    # fast_bias_correction); its graph keeps Clip between Q/DQ pairs, which ONNX Runtime's CPU kernels do
    # not fuse (measured: digits Lite0 64 px 29 ms against 0.6 ms for ours), so the p50 bound usually refuses it;
    # last, past the doctor's MAX_OPTION_ATTEMPTS: offered to a recipe, not spent in every search
    "nncf_bias_correction": "NNCF post-training quantization with fast bias correction (extra: quant)",
}
SPEC = register(
    FormatSpec(
        name="onnx",
        suffix=".onnx",
        precisions=("fp32", "fp16", "dynamic", "int8"),
        runtimes=("onnxruntime", "openvino"),
        exporter=__name__,
        op_reader="edgetransfer.graphops:onnx_ops",
        metadata_reader="edgetransfer.runtime.onnxrt:onnx_metadata",
        layouts=("nhwc", "nchw"),
        calibration_methods=("minmax", "entropy", "percentile"),
        weight_granularities=("per_channel", "per_tensor"),
        sensitivity_ranker=f"{__name__}:rank_sensitivity",
        precision_reader="edgetransfer.formats.foreign:onnx_precision",
        activation16_ranker=f"{__name__}:rank_activations16",
        tensor_diagnosis=f"{__name__}:tensor_diagnosis",
        float_op_reader="edgetransfer.formats.integer_check:onnx_float_ops",
        quantizer_options=tuple(OPTIONS),
        converters=("tf2onnx", "onnx", "onnxruntime"),
        description="ONNX (tf2onnx, opset 17) quantized by ONNX Runtime: dynamic, static QDQ U8S8, fp16",
    )
)


def make_source(model, size: int, layout: str, workdir: Path, dynamic_batch: bool = False) -> Source:
    """The exporter hook every format module has: convert ``model`` once for all precisions."""
    return Source(model, size, layout, workdir, dynamic_batch)


OPSET = 17
INPUT_NAME = "image"  # the same names as the TFLite signature def (formats/tflite.py)
OUTPUT_NAME = "probabilities"


def convert_fp32(model, size: int, layout: str, dynamic_batch: bool = False):
    """A float32 ``onnx.ModelProto`` ``image`` -> ``probabilities``, batch 1 (or ``batch`` with
    ``dynamic_batch``); ``nchw`` makes tf2onnx transpose the input once and push the transposes
    through the graph (its optimizer), instead of one per conv."""
    tf = _lazy.tf()
    tf2onnx = _lazy.require("tf2onnx")
    spec = (tf.TensorSpec((None if dynamic_batch else 1, size, size, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=OPSET, inputs_as_nchw=[INPUT_NAME] if layout == "nchw" else None
    )
    onnx_graph.name_io(proto, INPUT_NAME, OUTPUT_NAME)
    onnx_graph.set_batch(proto, dynamic_batch)
    return proto


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
            weight_type=q.QuantType.QInt8,
            calibrate_method=method,
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


_COUNTER = re.compile(r"__(\d+)")


def stable_names(proto):
    """Renumber tf2onnx's generated ``__<n>`` name suffixes in graph order: its counter is global to the
    process, so a second conversion of the same model got other names, and a recipe's ``keep_float``
    (node and tensor names) replayed in the same process named nothing. Returns ``proto``, renamed."""
    # first the names onnxslim picked among equals: the arbitrary ones carried numbers of their own, which
    # shifted every number after them
    proto = _outputs_named_by_node(proto)
    numbers: dict[str, int] = {}

    def fix(name: str) -> str:
        return _COUNTER.sub(lambda m: f"__{numbers.setdefault(m.group(1), len(numbers))}", name)

    g = proto.graph
    for n in g.node:
        n.name = fix(n.name)
        ins, outs = [fix(i) for i in n.input], [fix(o) for o in n.output]
        del n.input[:], n.output[:]
        n.input.extend(ins)
        n.output.extend(outs)
    for coll in (g.initializer, g.input, g.output, g.value_info):
        for v in coll:
            v.name = fix(v.name)
    return proto


def _outputs_named_by_node(proto):
    """Names onnxslim picks among equals, made the same on every conversion: every intermediate tensor is
    named after the node that makes it (``<node>:<k>``), every initializer shared by several nodes
    ``shared_<k>`` in order of first use. When onnxslim folds a BatchNorm into its Conv, the fused output
    took the name of one of the folded tensors, and which one varied between conversions in one process
    (seen: ``Conv__52:0`` or ``.../head_bn_1/batchnorm/mul_1__53:0``), as did the name of the one Clip
    min/max constant it keeps for all; so a recipe's ``a16:<tensor>`` named nothing on replay and a replay
    was not byte-identical. Node names stay as converted (in graph order)."""
    g = proto.graph
    inits = [i.name for i in g.initializer]
    fixed = {v.name for v in g.input} | {v.name for v in g.output} | set(inits)
    rename: dict[str, str] = {}
    users: dict[str, int] = {}
    for n in g.node:
        for t in set(n.input) & set(inits):
            users[t] = users.get(t, 0) + 1
    for i, n in enumerate(g.node):
        for t in n.input:
            if users.get(t, 0) > 1 and t not in rename:
                rename[t] = f"shared_{sum(v.startswith('shared_') for v in rename.values())}"
        for k, o in enumerate(n.output):
            if o and o not in fixed:
                rename[o] = f"{n.name or f'{n.op_type}_{i}'}:{k}"
    taken = fixed - set(rename)
    if len(set(rename.values())) != len(rename) or set(rename.values()) & taken:
        return proto  # names that would collide: leave the converter's names
    for n in g.node:
        ins, outs = [rename.get(t, t) for t in n.input], [rename.get(t, t) for t in n.output]
        del n.input[:], n.output[:]
        n.input.extend(ins)
        n.output.extend(outs)
    for coll in (g.initializer, g.value_info):
        for v in coll:
            v.name = rename.get(v.name, v.name)
    return proto


class Source:
    """The float32 ONNX graph, converted once, simplified by onnxslim (BatchNorm folded into the
    convolutions: fewer nodes, the same outputs) and quantized per recipe."""

    def __init__(self, model, size: int, layout: str, workdir: Path, dynamic_batch: bool = False):
        onnx = _lazy.require("onnx")
        self.layout = layout
        self.path = workdir / f"fp32_{layout}.onnx"
        proto = stable_names(onnx_graph.slim(convert_fp32(model, size, layout, dynamic_batch)))
        onnx_graph.set_batch(proto, dynamic_batch)  # keep the batch symbol / 1 whatever slim inferred
        onnx.save(proto, str(self.path))


def write(
    source: Source,
    recipe: QuantRecipe,
    calibration: Calibration | None,
    meta: dict,
    path: Path,
    *,
    keep_float: Sequence[str] = (),
) -> None:
    onnx = _lazy.require("onnx")
    with tempfile.TemporaryDirectory(prefix="et-onnx-", dir=path.parent) as tmp:
        if recipe.precision == "fp32":
            final = onnx.load(str(source.path))
        else:
            qpath = Path(tmp) / "q.onnx"
            _quantize(source.path, qpath, recipe, calibration, source.layout, keep_float)
            final = onnx.load(str(qpath))
        layout = source.layout
    # ONNX Runtime's fp16 converter appends the input Cast last, its quantizer imports every domain
    # it knows: put the nodes in order and keep only the domains used, so every file passes
    # onnx.checker.check_model(full_check=True) (checked below, before the file is renamed into place).
    onnx_graph.topological_sort(final)
    onnx_graph.prune_opsets(final)
    props = {
        "edgetransfer": json.dumps(meta),
        "labels": "\n".join(meta["labels"]),
        "normalization": json.dumps(meta["normalization"]),
        "input_layout": layout.upper(),
    }
    del final.metadata_props[:]
    for k, v in props.items():
        entry = final.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(final, str(path))
    onnx_graph.check(path)


def tensor_errors(source: Source, path: Path, calibration: Calibration, *, layout: str, images: int) -> list[dict]:
    """Per-tensor diagnosis of an int8 QDQ file against its float graph, in graph order: for every
    activation tensor both graphs have, its producing node and op type, the noise-to-signal ratio
    ``nsr`` (sum of squared error over sum of squares, the QDQ value taken after the tensor's own
    quantize/dequantize, as ONNX Runtime's ``qdq_loss_debug`` pairs them), ``snr_db``, and ``added``:
    its NSR minus the worst of its inputs' (the error the node itself adds). Streamed one image at a
    time over ``images`` calibration images to keep memory flat; names are those of the graph after
    :func:`prepare` (what ``nodes_to_exclude`` and ``TensorQuantOverrides`` take)."""
    fmodel, fsess, qsess, tensors, post = _paired_sessions(source, path)
    err = dict.fromkeys(tensors, 0.0)
    sig = dict.fromkeys(tensors, 0.0)
    x = calibration.images[:images]
    x = x.transpose(0, 3, 1, 2) if layout == "nchw" else x
    fin, qin = fsess.get_inputs()[0].name, qsess.get_inputs()[0].name
    fnames, qouts = [o.name for o in fsess.get_outputs()], [o.name for o in qsess.get_outputs()]
    for i in range(len(x)):
        batch = np.ascontiguousarray(x[i : i + 1], dtype=np.float32)
        f = dict(zip(fnames, fsess.run(None, {fin: batch}), strict=True))
        q = dict(zip(qouts, qsess.run(None, {qin: batch}), strict=True))
        for t in tensors:
            a, b = np.asarray(f[t], np.float64), np.asarray(q[post[t]], np.float64)
            if a.shape == b.shape:
                err[t] += float(((a - b) ** 2).sum())
                sig[t] += float((a**2).sum())
    nsr = {t: err[t] / sig[t] for t in tensors if sig[t] > 0}
    params = {i.name: int(np.prod(i.dims)) for i in fmodel.graph.initializer}
    rows = []
    for n in fmodel.graph.node:
        ins = [nsr[i] for i in n.input if i in nsr]
        for o in n.output:
            if o in nsr:
                rows.append(
                    {
                        "tensor": o,
                        "node": n.name,
                        "op_type": n.op_type,
                        "nsr": nsr[o],
                        "snr_db": round(10 * float(np.log10(1 / max(nsr[o], 1e-30))), 2),
                        "added": nsr[o] - max(ins, default=0.0),
                        "weights": sum(params.get(i, 0) for i in n.input),
                    }
                )
    return rows


def rank_sensitivity(
    source: Source, path: Path, calibration: Calibration, *, layout: str, images: int, size_allowance: float
) -> list[str]:
    """Node names, most error added first (:func:`tensor_errors`' ``added``: the error the node itself
    adds, weights and output rounding).

    The format's ``sensitivity_ranker`` (the quantization doctor's): ``images`` of the calibration
    set, in ``layout``; a node whose float weights alone would cost more than ``size_allowance``
    bytes is skipped (the rest are ranked within that allowance).
    """
    best: dict[str, tuple[float, int]] = {}
    for r in tensor_errors(source, path, calibration, layout=layout, images=images):
        if r["node"] and (r["node"] not in best or r["added"] > best[r["node"]][0]):
            best[r["node"]] = (r["added"], 3 * r["weights"])
    allowance, ranked = size_allowance, []
    for name, (gain, extra) in sorted(best.items(), key=lambda kv: kv[1][0], reverse=True):
        if gain > 0 and extra <= allowance:  # skip a node whose float weights alone would outgrow the file
            ranked.append(name)
            allowance -= extra
    return ranked


def rank_activations16(source: Source, path: Path, calibration: Calibration, *, layout: str, images: int) -> list[str]:
    """Activation tensors, lowest signal-to-noise ratio against the float graph first (:func:`tensor_errors`'
    ``snr_db``), as ``keep_float`` entries ``a16:<tensor>`` (16-bit activations, int8 weights).

    The accumulated error ranks here, not the error a node adds: on digits Lite0 at 96 px, keeping the
    8 lowest-SNR tensors at 16 bits took the drop from 0.84 to 0.28 points, where keeping nodes in float by
    the error they add moved nothing (issue 27).
    """
    rows = tensor_errors(source, path, calibration, layout=layout, images=images)
    return [A16 + r["tensor"] for r in sorted(rows, key=lambda r: r["nsr"], reverse=True)]


def tensor_diagnosis(source: Source, path: Path, images: np.ndarray, *, layout: str, meta: dict) -> list[dict]:
    """The format's ``tensor_diagnosis`` (``edgetransfer quant diagnose``): every activation tensor of the
    QDQ file ``path`` against the float graph's (after :func:`prepare`, whose names ``nodes_to_exclude``
    and ``TensorQuantOverrides`` take), the QDQ value read after the tensor's own quantize/dequantize as
    ONNX Runtime's ``qdq_loss_debug`` pairs them; one image at a time (memory stays flat). ``fix_float`` is
    the node name, ``fix_a16`` the ``a16:<tensor>`` entry, ``weights`` the names of the node's initializers
    (onnxslim renames a Conv with its BatchNorm folded in ``Conv__<n>``; its weights keep the Keras layer's
    name). ``meta`` is not needed here."""
    from .tensor_stats import TensorStats

    fmodel, fsess, qsess, tensors, post = _paired_sessions(source, path)
    x = images.transpose(0, 3, 1, 2) if layout == "nchw" else images
    fin, qin = fsess.get_inputs()[0].name, qsess.get_inputs()[0].name
    fnames, qouts = [o.name for o in fsess.get_outputs()], [o.name for o in qsess.get_outputs()]
    stats = TensorStats()
    for i in range(len(x)):
        batch = np.ascontiguousarray(x[i : i + 1], dtype=np.float32)
        f = dict(zip(fnames, fsess.run(None, {fin: batch}), strict=True))
        q = dict(zip(qouts, qsess.run(None, {qin: batch}), strict=True))
        for t in tensors:
            stats.add(t, f[t], q[post[t]])
    # weights and biases, not scalars: onnxslim shares one Clip min/max constant among all Clips, named after the first
    params = {i.name for i in fmodel.graph.initializer if int(np.prod(i.dims)) > 1}
    producer = {o: n for n in fmodel.graph.node for o in n.output}
    rows = []
    for n in fmodel.graph.node:
        folded, inputs = _folded(producer, n, set(tensors))
        for o in n.output:
            fields = {
                "node": n.name,
                "op_type": "+".join(f.op_type for f in folded),
                "fix_float": folded[0].name,  # the op with the weights: the quantizer folds a Clip after it
                "fix_a16": A16 + o,
                "weights": ";".join(i for f in folded for i in f.input if i in params),  # names a Conv__<n>'s layer
            }
            row = stats.row(o, inputs, **fields)
            if row is not None:
                rows.append(row)
    return rows


def _folded(producer: dict, node, matched: set[str], depth: int = 3) -> tuple[list, list[str]]:
    """``node`` with the nodes before it whose outputs the QDQ file does not have (ONNX Runtime's quantizer
    folds a Relu/Clip into the Conv before it: the Conv's own output is never quantized), in graph order,
    and their inputs that both graphs have: the error of such a chain is charged to it as one op."""
    nodes, inputs, todo = [node], [], list(node.input)
    while todo:
        i = todo.pop()
        p = producer.get(i)
        if i in matched or p is None or len(nodes) > depth:
            inputs.append(i)
        else:
            nodes.insert(0, p)
            todo.extend(p.input)
    return nodes, inputs


def _paired_sessions(source: Source, path: Path):
    """The float graph (after :func:`prepare`, whose names ``nodes_to_exclude`` and ``TensorQuantOverrides``
    take) and the QDQ file ``path``, each as a session that also outputs every activation tensor both have:
    ``(float model, float session, QDQ session, tensors, post)``, ``post`` naming each tensor's QDQ value
    after its own quantize/dequantize, as ONNX Runtime's ``qdq_loss_debug`` pairs them."""
    onnx = _lazy.require("onnx")
    ort = _lazy.require("onnxruntime")
    with tempfile.TemporaryDirectory(prefix="et-pair-") as tmp:
        prep = Path(tmp) / "prep.onnx"
        prepare(source.path, prep)
        fmodel, qmodel = onnx.load(str(prep)), onnx.load(str(path))
        qnames = {o for n in qmodel.graph.node for o in n.output}
        tensors = [o for n in fmodel.graph.node for o in n.output if o in qnames]
        post = {t: f"{t}_DequantizeLinear_Output" if f"{t}_DequantizeLinear_Output" in qnames else t for t in tensors}
        fsess = _session_with_outputs(onnx, ort, fmodel, tensors, Path(tmp) / "f.onnx")
        qsess = _session_with_outputs(onnx, ort, qmodel, sorted(set(post.values())), Path(tmp) / "q.onnx")
    return fmodel, fsess, qsess, tensors, post


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
