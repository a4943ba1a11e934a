"""TFLM's kernel list and the checks against it: which ops a ``.tflite`` uses, what precision it
computes in, and whether TensorFlow Lite for Microcontrollers can run it.

Read from the flatbuffer alone (TensorFlow's schema, else the copy ``tflite-micro`` ships), so
a file is refused (exit 2) before any interpreter runs. Used by the TFLM runtime
(:mod:`edgetransfer.runtime.tflm`) and by the TFLM packaging (:mod:`edgetransfer.exporter.formats.tflm`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, MissingDependencyError, UnsupportedError
from .base import require_file

# tensorflow/tflite-micro tensorflow/lite/micro/micro_mutable_op_resolver.h (commit 90b983c2,
# 2026-08-20): every `TfLiteStatus AddXxx(...) { return AddBuiltin(BuiltinOperator_YYY, ...`.
# An op missing here has no TFLM kernel.
TFLM_BUILTINS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}
# Custom ops with a kernel in TFLM's core library (same header: AddCustom("...") calls; the
# Signal* ops of the optional signal library are left out).
TFLM_CUSTOM: dict[str, str] = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
}
CUSTOM_PREFIX = "CUSTOM:"

_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}
_PRECISION_WORDS = {
    "fp32": "float32 weights and activations",
    "fp16": "float16 weights, float activations",
    "dynamic": "int8 weights, float activations",
    "int16x8": "int16 activations",
}
_EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")  # convert at the graph's edges; not compute


# --------------------------------------------------------------------------- the flatbuffer


def _schema():
    """The TFLite flatbuffer schema (object API): TensorFlow's, else the copy tflite-micro ships."""
    try:
        from .. import _lazy

        _lazy.tf()  # first, so TensorFlow's import-time logging is silenced
        from tensorflow.lite.python import schema_py_generated as schema
    except (ImportError, MissingDependencyError):  # the app side may have tflite-micro without TensorFlow
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


def model_bytes(tflite: bytes | bytearray | str | Path) -> bytes:
    """The flatbuffer's bytes, from bytes or a path (a missing file named)."""
    return bytes(tflite) if isinstance(tflite, (bytes, bytearray)) else require_file(tflite).read_bytes()


def _model(tflite: bytes | bytearray | str | Path):
    schema = _schema()
    data = bytearray(model_bytes(tflite))
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0)), schema
    except Exception as exc:  # flatbuffers raises anything from struct.error to IndexError on garbage
        where = None if isinstance(tflite, (bytes, bytearray)) else tflite
        raise ConfigError(
            f"not a TFLite flatbuffer ({type(exc).__name__})",
            path=where,
            fix="pass a .tflite file written by `edgetransfer export --format tflite`",
        ) from None


def _op_name(model, schema, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)  # schema v3a: codes > 127 in builtinCode
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
        return CUSTOM_PREFIX + custom
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, f"BUILTIN_{builtin}")


def required_ops(tflite: bytes | str | Path) -> list[str]:
    """The distinct ops of every subgraph, in first-use order: ``CONV_2D``, ``CUSTOM:<name>``."""
    model, schema = _model(tflite)
    seen: dict[str, None] = {}
    for sub in model.subgraphs or []:
        for op in sub.operators or []:
            seen.setdefault(_op_name(model, schema, op), None)
    return list(seen)


def model_precision(tflite: bytes | str | Path) -> str:
    """What the graph computes in, read from its tensors: ``int8``, ``int16x8``, ``fp16``,
    ``dynamic`` (int8 weights, float activations) or ``fp32``.

    QUANTIZE / DEQUANTIZE at the edges do not count: an int8 graph with float32 or uint8 input
    and output is still ``int8``.
    """
    model, schema = _model(tflite)
    has_int8_weights, float_compute, int16_acts = False, False, False
    for sub in model.subgraphs or []:
        const = {
            i
            for i, t in enumerate(sub.tensors or [])
            if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
        }
        types = [_TENSOR_TYPES.get(t.type, str(t.type)) for t in sub.tensors or []]
        if "float16" in types:
            return "fp16"
        has_int8_weights |= any(types[i] == "int8" for i in const)
        for op in sub.operators or []:
            if _op_name(model, schema, op) in _EDGE_OPS:
                continue
            acts = [i for i in [*op.inputs, *op.outputs] if i >= 0 and i not in const]
            float_compute |= any(types[i] == "float32" for i in acts)
            int16_acts |= any(types[i] == "int16" for i in acts)
    if float_compute:
        return "dynamic" if has_int8_weights else "fp32"
    return "int16x8" if int16_acts else "int8"


def check_tflm(tflite: bytes | str | Path, *, path: str | Path | None = None) -> list[str]:
    """Refuse, before anything runs, a file TFLM cannot run as a full-int8 model.

    Args:
        tflite: the ``.tflite`` bytes or path.
        path: the file's name for messages (defaults to ``tflite`` when it is a path).

    Returns:
        The ops the model needs (see :func:`required_ops`).

    Raises:
        UnsupportedError: (exit 2) an op with no TFLM kernel, or a model that is not full int8.
    """
    where = path if path is not None else (None if isinstance(tflite, (bytes, bytearray)) else tflite)
    ops = required_ops(tflite)
    missing = [o for o in ops if o not in TFLM_BUILTINS and o.removeprefix(CUSTOM_PREFIX) not in TFLM_CUSTOM]
    if missing:
        raise UnsupportedError(
            f"TFLM has no kernel for op {', '.join(missing)} (tflite-micro micro_mutable_op_resolver.h)",
            path=where,
            fix="change the model so the converter does not emit it, or register your own kernel in the firmware",
        )
    precision = model_precision(tflite)
    if precision != "int8":
        raise UnsupportedError(
            f"the model's precision is {precision} ({_PRECISION_WORDS.get(precision, precision)}); "
            "TFLM targets need a full-int8 model (int8 weights and activations)",
            path=where,
            fix="export it with `--precision int8` (full-integer quantization with a calibration set)",
        )
    return ops


def require_tflm_ops(path: str | Path) -> None:
    """The runtime registry's op check (``RuntimeSpec.ops``): :func:`check_tflm` on a file."""
    check_tflm(require_file(path).read_bytes(), path=path)
