"""Simulate ONNX Runtime's U8S8 int8 kernels on x86 without VNNI: which weight pairs saturate (issue #39, item 6).

On AVX2 (no VNNI) MLAS's U8S8 GEMM (onnxruntime/core/mlas, QgemmU8S8KernelAvx2) multiplies uint8
activations by int8 weights with ``vpmaddubsw``: each pair of adjacent products along the reduction
axis, ``a[k] * w[k] + a[k+1] * w[k+1]``, is added into int16 with saturation, before ``vpmaddwd`` widens to
int32. With VNNI (``vpdpbusd``) the same products accumulate in int32 and nothing saturates. This machine
has VNNI, so the AVX2 behaviour cannot run here: this module computes it in NumPy, on the activations a
QDQ file really produces for given images (ONNX Runtime with graph optimisation off, the QuantizeLinear
outputs read back), for every dense Conv, MatMul and Gemm whose weights are int8.

What it assumes, from the kernels' layout: the reduction axis of a Conv is ordered (kernel row, kernel
column, input channel), as MLAS's NHWC QLinearConv im2col orders it (for the 1x1 convolutions that hold
most MACs of a MobileNet-style network the order is the input channels, without ambiguity); depthwise
convolutions are skipped (MLAS's depthwise int8 kernel multiplies in int16 and accumulates in int32, no pairs).
The figures it gives are SIMULATED: no AVX2 machine ran them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import _lazy

INT16_MAX, INT16_MIN = 32767, -32768
_CHUNK = 1 << 22  # pair sums computed per block of about this many int32 values (16 MB)


@dataclass(frozen=True)
class LayerSaturation:
    """One int8 layer: its adjacent u8 x s8 product pairs on the sampled positions, and how many leave int16."""

    node: str
    op: str
    pairs: int
    saturated: int
    worst: int  # the largest |pair| seen (32767 is the limit)

    @property
    def share(self) -> float:
        return self.saturated / self.pairs if self.pairs else 0.0


@dataclass(frozen=True)
class Saturation:
    """A QDQ file's layers under AVX2's U8S8 pair arithmetic (simulated)."""

    model: str
    images: int
    layers: tuple[LayerSaturation, ...]

    @property
    def saturated(self) -> int:
        return sum(x.saturated for x in self.layers)

    @property
    def pairs(self) -> int:
        return sum(x.pairs for x in self.layers)

    @property
    def saturates(self) -> bool:
        """Whether any pair leaves int16 on AVX2: the file's result there differs from its exact integer result."""
        return self.saturated > 0

    def render(self, top: int = 8) -> str:
        u8u8 = sum(1 for x in self.layers if x.op.endswith("U8U8"))
        head = (
            f"{Path(self.model).name}: {self.saturated:,} of {self.pairs:,} u8 x s8 pairs saturate int16 on AVX2 "
            f"(simulated, {self.images} image(s), {len(self.layers) - u8u8} U8S8 layers"
            + (f", {u8u8} U8U8 layers that cannot saturate)" if u8u8 else ")")
        )
        worst = sorted((x for x in self.layers if x.pairs), key=lambda x: -x.share)[:top]
        rows = [f"  {x.node[-48:]:48s} {x.op:7s} {100 * x.share:7.3f}%  max |pair| {x.worst}" for x in worst]
        return "\n".join([head, *rows])


def _graph(model):
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return inits, producer


def _int8_layers(model) -> list[dict]:
    """Dense Conv / MatMul / Gemm fed by DequantizeLinear(uint8 activation) and DequantizeLinear(8-bit weights)."""
    numpy_helper = _lazy.require("onnx").numpy_helper
    inits, producer = _graph(model)
    out = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.input) < 2:
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue
        if w_dq.input[0] not in inits or x_dq.input[0] in inits:
            continue
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        attrs = {a.name: _lazy.require("onnx").helper.get_attribute_value(a) for a in node.attribute}
        if w.dtype not in (np.int8, np.uint8) or (node.op_type == "Conv" and int(attrs.get("group", 1)) != 1):
            continue  # depthwise convs use MLAS's int16 x int16 -> int32 kernel: no pairs
        zp = numpy_helper.to_array(inits[x_dq.input[2]]) if len(x_dq.input) > 2 and x_dq.input[2] in inits else 0
        out.append({"node": node.name or node.output[0], "op": node.op_type, "xq": x_dq.input[0], "w": w,
                    "zp": int(np.asarray(zp).reshape(-1)[0]), "attrs": attrs})  # fmt: skip
    return out


def _activations(path: Path, model, names: list[str], batches: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The uint8 tensors ``names`` for each input batch: the graph with them as outputs, run unoptimised."""
    onnx, ort = _lazy.require("onnx"), _lazy.require("onnxruntime", extra="runtime")
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every Q/DQ pair as written
    with tempfile.TemporaryDirectory(prefix="et-sat-") as tmp:
        probe = Path(tmp) / path.name
        onnx.save(model, str(probe))
        sess = ort.InferenceSession(str(probe), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    found: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for x in batches:
        values = sess.run(names, {inp: x})
        for n, v in zip(names, values):
            found[n].append(np.asarray(v))
    return found


def _rows(layer: dict, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A [rows, K] uint8 as int32, W [K, N] int8 as int32) with K in the kernels' order."""
    w = layer["w"].astype(np.int32)
    if layer["op"] != "Conv":
        if layer["op"] == "Gemm" and int(layer["attrs"].get("transB", 0)):
            w = w.T
        return a.reshape(-1, a.shape[-1]).astype(np.int32), w
    n, c, h, wd = a.shape
    kh, kw = w.shape[2], w.shape[3]
    sh, sw = (list(layer["attrs"].get("strides", [1, 1])) + [1, 1])[:2]
    dh, dw = (list(layer["attrs"].get("dilations", [1, 1])) + [1, 1])[:2]
    pads = list(layer["attrs"].get("pads", [0, 0, 0, 0])) or [0, 0, 0, 0]
    padded = np.pad(a, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=layer["zp"])
    oh = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    cols = [
        padded[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]  # each [n, c, oh, ow]
    stacked = np.stack(cols, axis=1)  # [n, kh*kw, c, oh, ow]: K ordered (kernel row, kernel column, channel)
    rows = stacked.transpose(0, 3, 4, 1, 2).reshape(n * oh * ow, kh * kw * c)
    weights = w.transpose(2, 3, 1, 0).reshape(kh * kw * c, -1)  # [kh, kw, cin, cout] -> [K, N]
    return rows.astype(np.int32), weights


def _pairs(a: np.ndarray, w: np.ndarray) -> tuple[int, int, int]:
    """(pairs, saturated, worst |pair|) of ``a @ w`` computed AVX2's way."""
    if a.shape[1] % 2:
        a, w = np.pad(a, ((0, 0), (0, 1))), np.pad(w, ((0, 1), (0, 0)))
    ae, ao, we, wo = a[:, 0::2], a[:, 1::2], w[0::2], w[1::2]
    step = max(1, _CHUNK // max(1, a.shape[0] * ae.shape[1]))
    total = sat = worst = 0
    for j in range(0, w.shape[1], step):
        p = ae[:, :, None] * we[None, :, j : j + step] + ao[:, :, None] * wo[None, :, j : j + step]
        total += p.size
        sat += int(np.count_nonzero((p > INT16_MAX) | (p < INT16_MIN)))
        worst = max(worst, int(np.abs(p).max()))
    return total, sat, worst


def simulate(path: str | Path, batches: list[np.ndarray], *, max_rows: int = 256, seed: int = 0) -> Saturation:
    """AVX2's U8S8 pair saturation in the int8 layers of QDQ file ``path`` on input ``batches`` (already in the
    file's input layout and dtype), ``max_rows`` output positions sampled per layer and image."""
    onnx = _lazy.require("onnx")
    path = Path(path)
    model = onnx.load(str(path))
    layers = _int8_layers(model)
    u8s8 = [x for x in layers if x["w"].dtype == np.int8]
    acts = _activations(path, model, list(dict.fromkeys(x["xq"] for x in u8s8)), batches) if u8s8 else {}
    rng = np.random.default_rng(seed)
    out = []
    for layer in layers:
        if layer["w"].dtype == np.uint8:  # U8U8: MLAS widens both to int16 and adds pairs in int32 (vpmaddwd)
            out.append(LayerSaturation(layer["node"], layer["op"] + " U8U8", 0, 0, 0))
            continue
        total = sat = worst = 0
        for a in acts[layer["xq"]]:
            rows, w = _rows(layer, a)
            if len(rows) > max_rows:
                rows = rows[rng.choice(len(rows), max_rows, replace=False)]
            t, s, m = _pairs(rows, w)
            total, sat, worst = total + t, sat + s, max(worst, m)
        out.append(LayerSaturation(layer["node"], layer["op"], total, sat, worst))
    return Saturation(str(path), len(batches), tuple(out))
