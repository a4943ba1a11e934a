"""ONNX export through tf2onnx, then ONNX Runtime quantization (dynamic, static QDQ, fp16)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ... import _lazy
from ...runtime.onnxrt import onnx_metadata
from . import FormatSpec, onnx_graph, register
from .foreign import onnx_precision
from .graphops import onnx_ops
from .integer_check import onnx_float_ops
from .onnx_quantize import A16, _quantize, _session_with_outputs, prepare

if TYPE_CHECKING:
    from ..quantization import Calibration, QuantRecipe

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
    # 7-bit weights ([-64, 64]): ONNX Runtime's U8S8 kernels on x86 without VNNI add adjacent u8 x s8 products in
    # int16 (vpmaddubsw) and saturate; 2 x 255 x 64 = 32640 never does (onnxruntime.ai "Quantize ONNX models",
    # U8U8 and reduce_range; edgetransfer.isa). Chosen by export for targets whose isa says so, not by the doctor.
    "reduce_range": "7-bit weights: no U8S8 saturation on x86 CPUs without VNNI (AVX2)",
    # uint8 weights (U8U8): MLAS's U8U8 kernel widens both to int16 and accumulates pairs in int32 (vpmaddwd),
    # so nothing saturates, and the weights keep 8 bits (the same guide's other remedy)
    "u8u8": "uint8 weights (U8U8): no saturation on x86 CPUs without VNNI, 8-bit weights kept",
}


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


SPEC = register(
    FormatSpec(
        name="onnx",
        suffix=".onnx",
        precisions=("fp32", "fp16", "dynamic", "int8"),
        runtimes=("onnxruntime", "openvino"),
        exporter=__name__,
        op_reader=onnx_ops,
        metadata_reader=onnx_metadata,
        layouts=("nhwc", "nchw"),
        calibration_methods=("minmax", "entropy", "percentile"),
        weight_granularities=("per_channel", "per_tensor"),
        sensitivity_ranker=rank_sensitivity,
        precision_reader=onnx_precision,
        activation16_ranker=rank_activations16,
        tensor_diagnosis=tensor_diagnosis,
        float_op_reader=onnx_float_ops,
        quantizer_options=tuple(OPTIONS),
        converters=("tf2onnx", "onnx", "onnxruntime"),
        description="ONNX (tf2onnx, opset 17) quantized by ONNX Runtime: dynamic, static QDQ U8S8, fp16",
    )
)
