"""Per-op facts read from an exported file: op type, MACs, bytes, in graph order.

Feeds the latency cost model and the delegate-compatibility check, so both speak of the
graph that actually ships (after conversion and quantization), not the Keras model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import _lazy
from ...records.profile import Op

_TFLITE_KIND = {
    "CONV_2D": "conv",
    "DEPTHWISE_CONV_2D": "depthwise",
    "FULLY_CONNECTED": "dense",
    "AVERAGE_POOL_2D": "pool",
    "MAX_POOL_2D": "pool",
    "MEAN": "pool",
    "ADD": "elementwise",
    "MUL": "elementwise",
    "SUB": "elementwise",
    "RELU": "elementwise",
    "RELU6": "elementwise",
    "LOGISTIC": "elementwise",
    "HARD_SWISH": "elementwise",
    "QUANTIZE": "elementwise",
    "DEQUANTIZE": "elementwise",
    "SOFTMAX": "elementwise",
    "PAD": "elementwise",
    "RESHAPE": "other",
    "CONCATENATION": "other",
}
_ONNX_KIND = {
    "Conv": "conv",
    "ConvInteger": "conv",
    "QLinearConv": "conv",
    "Gemm": "dense",
    "MatMul": "dense",
    "MatMulInteger": "dense",
    "GlobalAveragePool": "pool",
    "AveragePool": "pool",
    "MaxPool": "pool",
    "ReduceMean": "pool",
    "Add": "elementwise",
    "Mul": "elementwise",
    "Relu": "elementwise",
    "Clip": "elementwise",
    "Sigmoid": "elementwise",
    "HardSwish": "elementwise",
    "QuantizeLinear": "elementwise",
    "DequantizeLinear": "elementwise",
    "Softmax": "elementwise",
    "Pad": "elementwise",
}
_TFLITE_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1}  # TensorType -> bytes


def _prod(shape) -> int:
    return int(np.prod([max(1, int(d)) for d in shape])) if len(shape) else 1


def tflite_ops(path: str | Path) -> list[Op]:
    """Ops of a .tflite's main subgraph, in execution order."""
    _lazy.tf()  # first, so TensorFlow's import-time logging is silenced
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.subgraphs[0]
    out = []
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        tensors = [sub.tensors[i] for i in list(op.inputs) if i >= 0]
        outs = [sub.tensors[i] for i in op.outputs]
        const = [t for t in tensors if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)]
        varying = [t for t in tensors if t not in const] + outs
        size = lambda t: _prod(t.shape) * _TFLITE_ITEMSIZE.get(t.type, 4)
        out.append(
            Op(
                name,
                _TFLITE_KIND.get(name, "other"),
                _tflite_macs(name, tensors, outs),
                sum(size(t) for t in const),
                sum(size(t) for t in varying),
            )
        )
    return out


def _tflite_macs(name: str, ins, outs) -> int:
    if name == "CONV_2D":
        o, w = outs[0].shape, ins[1].shape  # out NHWC, weights (Cout, kh, kw, Cin)
        return _prod(o[1:3]) * int(w[0]) * int(w[1]) * int(w[2]) * int(w[3])
    if name == "DEPTHWISE_CONV_2D":
        o, w = outs[0].shape, ins[1].shape  # weights (1, kh, kw, C)
        return _prod(o[1:3]) * int(w[1]) * int(w[2]) * int(w[3])
    if name == "FULLY_CONNECTED":
        w = ins[1].shape
        return int(w[0]) * int(w[1])
    return 0


def onnx_ops(path: str | Path) -> list[Op]:
    """Nodes of an .onnx graph with shapes inferred, in graph order."""
    onnx = _lazy.require("onnx")
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {
        v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
        for v in list(g.value_info) + list(g.output) + list(g.input)
    }
    # In QDQ graphs weights reach Conv through a DequantizeLinear of an int8 initializer.
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            inits.setdefault(n.output[0], inits[n.input[0]])
    out = []
    for n in g.node:
        weights = [inits[i] for i in n.input if i in inits]
        wbytes = sum(w.nbytes for w in weights)
        acts = sum(
            _prod(shapes.get(i, [])) * 4 for i in list(n.input) + list(n.output) if i not in inits and i in shapes
        )
        kind = _ONNX_KIND.get(n.op_type, "other")
        macs = 0
        if n.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w = next((inits[i] for i in n.input[1:] if i in inits and inits[i].ndim == 4), None)
            o = shapes.get(n.output[0], [])
            if w is not None and len(o) == 4:
                macs = _prod(o[2:]) * int(w.shape[0]) * int(np.prod(w.shape[1:]))
                group = next((a.i for a in n.attribute if a.name == "group"), 1)
                kind = "depthwise" if group > 1 and group == int(w.shape[0]) else kind
        elif n.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            w = next((inits[i] for i in n.input if i in inits and inits[i].ndim == 2), None)
            macs = int(np.prod(w.shape)) if w is not None else 0
        out.append(Op(n.op_type, kind, macs, wbytes, acts))
    return out


def ops_for(path: str | Path) -> list[Op]:
    """The ops of any exported file, through its format's registered reader."""
    from .. import formats

    ops: list[Op] = formats.for_path(path).op_reader(Path(path))
    return ops
