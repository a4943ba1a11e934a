"""Which ops of an int8 file compute in float: what an integer-only accelerator (Edge TPU, NPUs, MCUs) cannot
take whole. Each format registers its reader as ``FormatSpec.float_op_reader``.

- TFLite: an op with a float32/float16 input or output tensor, except the QUANTIZE that takes a float model
  input and the DEQUANTIZE that gives a float model output (the file's interface, ``--io float32``).
- ONNX (QDQ): a compute node is integer when ONNX Runtime can run it as an integer kernel: every float input
  comes from a DequantizeLinear and every output goes only to QuantizeLinear (the QDQ node-unit rule of
  onnxruntime/core/optimizer/qdq_transformer/selectors_actions); a float initializer feeding it (a float
  bias, ``float_bias``) or an output left float (``float_output``) makes it a float op. Shape-only inputs
  (int64 initializers of Reshape) do not count.
"""

from __future__ import annotations

from pathlib import Path

from ... import _lazy

_TFLITE_FLOAT = (0, 1)  # TensorType FLOAT32, FLOAT16 (tensorflow/lite/schema/schema.fbs)
_ONNX_FLOAT = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
_QDQ = ("QuantizeLinear", "DequantizeLinear")
# nodes that only move or reshape integer data: ONNX Runtime runs them on the int8 tensor between Q/DQ pairs
_DATA_MOVEMENT = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity")


def tflite_float_ops(path: str | Path) -> list[str]:
    """``<index>:<OP>`` of every op computing in float between the model's input and output."""
    _lazy.tf()
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.subgraphs[0]
    inputs, outputs = set(sub.inputs), set(sub.outputs)
    out = []
    for i, op in enumerate(sub.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        ins = [t for t in op.inputs if t >= 0]
        if name == "QUANTIZE" and set(ins) <= inputs:
            continue  # float model input -> int8: the interface
        if name == "DEQUANTIZE" and set(op.outputs) <= outputs:
            continue  # int8 -> float model output: the interface
        if any(sub.tensors[t].type in _TFLITE_FLOAT for t in [*ins, *op.outputs]):
            out.append(f"{i}:{name}")
    return out


def onnx_float_ops(path: str | Path) -> list[str]:
    """``<node name>:<op type>`` of every compute node of a QDQ file that stays float (see the module doc)."""
    onnx = _lazy.require("onnx")
    g = onnx.load(str(path)).graph
    init_type = {i.name: i.data_type for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    graph_outputs = {o.name for o in g.output}
    out = []
    for n in g.node:
        if n.op_type in _QDQ:
            continue
        bad_in = False
        for t in n.input:
            if not t:
                continue
            if t in init_type:
                bad_in |= init_type[t] in _ONNX_FLOAT
                continue
            src = producer.get(t)
            bad_in |= src is None or (src.op_type != "DequantizeLinear" and src.op_type not in _DATA_MOVEMENT)
        bad_out = any(
            o in graph_outputs
            or any(c.op_type != "QuantizeLinear" and c.op_type not in _DATA_MOVEMENT for c in consumers.get(o, []))
            for o in n.output
        )
        if n.op_type in _DATA_MOVEMENT and not (bad_in and bad_out):
            continue  # moves whatever it is given: integer between integer ops
        if bad_in or bad_out:
            out.append(f"{n.name or n.output[0]}:{n.op_type}")
    return out
