"""TensorFlow Lite for Microcontrollers (TFLM): C source, op resolver, tensor arena, host session.

A full-int8 ``.tflite`` runs unchanged on a microcontroller under TFLM; what the firmware needs
is the file as a C array, an op resolver listing the kernels the graph uses, and the size of the
tensor arena. Everything here is checked against TFLM's own kernel list before anything runs,
and the arena is measured by the real TFLM interpreter (the ``tflite-micro`` package), which also
gives a :class:`TFLMSession` so accuracy is measured through the kernels that ship.

Public API: :func:`required_ops`, :func:`model_precision`, :func:`check_tflm`,
:func:`to_c_source`, :func:`measure_arena`, :class:`TFLMSession`, :class:`TFLM` (a Runtime),
:func:`export_tflm`, :func:`estimate_latency`, :func:`fits`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import ConfigError, ExportError, MissingDependencyError, RuntimeBackendError, UnsupportedError
from ..runtime.base import InputSpec, quantize_input, require_file
from . import FormatSpec, register

# TFLM is a packaging of a full-int8 .tflite (C array + op resolver + arena size); the file
# validated and gated is that .tflite, run by the real TFLM kernels on tflm targets.
SPEC = register(
    FormatSpec(
        name="tflm",
        suffix=".cc",
        precisions=("int8",),
        runtimes=("tflm",),
        exporter=__name__,
        op_reader="edgetransfer.graphops:tflite_ops",
        metadata_reader="edgetransfer.runtime.base:read_tflite_metadata",
        io_dtypes=("uint8", "int8", "float32"),
        in_all=False,
        packages="tflite",
        description="TensorFlow Lite for Microcontrollers: the int8 .tflite as model_data.cc/.h, op resolver, "
        "arena size",
    )
)


def package(int8_tflite_path: str | Path, out_dir: str | Path) -> TFLMExport:
    """The exporter hook of a packaging format (see ``FormatSpec.packages``)."""
    return export_tflm(int8_tflite_path, out_dir)


# Builtin op -> the MicroMutableOpResolver method that registers its kernel. Extracted from
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
_ARENA_CAP = 1 << 30  # no microcontroller has 1 GiB of RAM: past it, allocation fails for another reason
_C_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEX = [f"0x{b:02x}" for b in range(256)]


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


def _bytes(tflite: bytes | bytearray | str | Path) -> bytes:
    return bytes(tflite) if isinstance(tflite, (bytes, bytearray)) else require_file(tflite).read_bytes()


def _model(tflite: bytes | bytearray | str | Path):
    schema = _schema()
    data = bytearray(_bytes(tflite))
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


# --------------------------------------------------------------------------- C source


def resolver_calls(ops: list[str]) -> list[str]:
    """``MicroMutableOpResolver`` method names for ``ops``, in the same order."""
    return [
        TFLM_CUSTOM[o.removeprefix(CUSTOM_PREFIX)] if o.startswith(CUSTOM_PREFIX) else TFLM_BUILTINS[o] for o in ops
    ]


def _c_array(data: bytes, per_line: int = 16) -> str:
    return ",\n".join(
        "  " + ", ".join(map(_HEX.__getitem__, data[i : i + per_line])) for i in range(0, len(data), per_line)
    )


def to_c_source(
    tflite: bytes,
    *,
    name: str = "g_model",
    arena_bytes: int | None = None,
    header: str = "model_data.h",
    source: str = "",
) -> tuple[str, str]:
    """The model as C++ source for a TFLM firmware: ``(model_data.cc, model_data.h)``.

    The ``.cc`` holds ``alignas(16) const unsigned char <name>[]`` (TFLM reads the flatbuffer in
    place and needs 16-byte alignment) and ``const unsigned int <name>_len``. The header declares
    both and, in ``namespace <name>_tflm``: ``kModelLen``, ``kTensorArenaSize`` (overridable
    with ``-D<NAME>_TENSOR_ARENA_SIZE=...``), ``kNumOps``, ``OpResolver`` (a
    ``tflite::MicroMutableOpResolver<kNumOps>``) and ``RegisterOps(OpResolver&)``, one ``AddXxx()``
    per op the graph uses.

    Args:
        tflite: the full-int8 ``.tflite`` bytes (checked with :func:`check_tflm`).
        name: the C identifier of the array.
        arena_bytes: the tensor arena; measured with :func:`measure_arena` when ``None``.
        header: the header's file name, included by the ``.cc``.
        source: the file it came from, for the generated comment.

    Raises:
        ConfigError: ``name`` is not a C identifier.
        UnsupportedError: the model cannot run under TFLM (see :func:`check_tflm`).
    """
    if not _C_NAME.match(name):
        raise ConfigError(
            f"C array name {name!r} is not a C identifier", fix="use letters, digits and _ (e.g. g_model)"
        )
    data = bytes(tflite)
    ops = check_tflm(data, path=source or None)
    arena = measure_arena(data) if arena_bytes is None else int(arena_bytes)
    guard, macro, ns = f"EDGETRANSFER_{name.upper()}_DATA_H_", f"{name.upper()}_TENSOR_ARENA_SIZE", f"{name}_tflm"
    stamp = (
        f"// Generated by edgetransfer {__version__} from {Path(source).name or 'a .tflite'} "
        f"(sha256 {hashlib.sha256(data).hexdigest()[:16]}, {len(data)} bytes). Do not edit.\n"
    )
    cc = (
        f'{stamp}#include "{header}"\n\n'
        f"alignas(16) const unsigned char {name}[] = {{\n{_c_array(data)}\n}};\n"
        f"const unsigned int {name}_len = {len(data)};\n"
    )
    adds = "\n".join(
        f"  if (resolver.{call}() != kTfLiteOk) return kTfLiteError;  // {op}"
        for op, call in zip(ops, resolver_calls(ops))
    )
    h = f"""{stamp}//
// Use (TFLM):
//   alignas(16) static uint8_t arena[{ns}::kTensorArenaSize];
//   static {ns}::OpResolver resolver;
//   {ns}::RegisterOps(resolver);
//   tflite::MicroInterpreter interpreter(tflite::GetModel({name}), resolver, arena, {ns}::kTensorArenaSize);
#ifndef {guard}
#define {guard}

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

extern const unsigned char {name}[];  // the .tflite flatbuffer, 16-byte aligned
extern const unsigned int {name}_len;

// The tensor arena the TFLM interpreter needed on the host with its reference kernels (smallest
// arena_size whose AllocateTensors() succeeds). Optimized kernels (CMSIS-NN, ESP-NN) can ask for
// a few KB more scratch: override with -D{macro}=<bytes>
// if AllocateTensors() fails on the device.
#ifndef {macro}
#define {macro} {arena}
#endif

namespace {ns} {{
constexpr unsigned int kModelLen = {len(data)};
constexpr unsigned int kTensorArenaSize = {macro};
constexpr unsigned int kNumOps = {len(ops)};
using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;

// Registers exactly the kernels this model uses (method names: micro_mutable_op_resolver.h).
inline TfLiteStatus RegisterOps(OpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}
}}  // namespace {ns}

#endif  // {guard}
"""
    return cc, h


# --------------------------------------------------------------------------- the TFLM interpreter


def _runtime():
    try:
        return importlib.import_module("tflite_micro.python.tflite_micro.runtime")
    except Exception as exc:  # ImportError, or a binary built against another NumPy
        raise MissingDependencyError(
            f"the TFLM host interpreter could not be imported ({exc})",
            fix='pip install "edgetransfer[tflm]"  (installs tflite-micro)',
        ) from None


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture file descriptor 2 (TFLM's C++ MicroPrintf writes there, not to ``sys.stderr``):
    keeps the allocator's failure lines for messages and out of the user's terminal."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read().decode(errors="replace").splitlines())


def _interpreter(data: bytes, arena: int):
    """A TFLM interpreter with ``arena`` bytes, or ``(None, the TFLM log)`` if it cannot allocate."""
    rt = _runtime()
    with _captured_stderr() as log:
        try:
            return rt.Interpreter.from_bytes(data, arena_size=int(arena)), log
        except RuntimeError:
            pass
    return None, log


_ARENAS: dict[str, int] = {}  # sha256 of the model -> measured arena (the search takes seconds)


def measure_arena(tflite: bytes | str | Path, *, timeout_s: float = 600) -> int:
    """The smallest tensor arena, in bytes, with which TFLM allocates and runs the model,
    measured in a child process (see :func:`_measure_arena_here` for the method).

    TFLM is native code that aborts the process on some graphs (e.g. an untrained ReLU6 model's
    degenerate quantization), so it never runs first in this one: a crash becomes an error naming
    the file. Results are cached per file content.

    Raises:
        UnsupportedError: the model cannot run under TFLM (op or precision).
        RuntimeBackendError: TFLM crashed, timed out, or cannot allocate the model.
    """
    import subprocess
    import sys

    data = _bytes(tflite)
    where = None if isinstance(tflite, (bytes, bytearray)) else Path(tflite)
    check_tflm(data, path=where)
    digest = hashlib.sha256(data).hexdigest()
    if digest in _ARENAS:
        return _ARENAS[digest]
    with tempfile.TemporaryDirectory(prefix="et-tflm-") as tmp:
        model = Path(tmp) / "model.tflite"
        model.write_bytes(data)
        cmd = [sys.executable, "-m", __name__, "arena", str(model)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeBackendError(
                f"TFLM did not finish measuring the arena within {timeout_s:g} s",
                path=where,
                fix="check the file runs in LiteRT first",
            ) from None
    _ARENAS[digest] = _arena_answer(res, where)
    return _ARENAS[digest]


def _arena_answer(res, where) -> int:
    """The child's JSON answer, or its error re-raised with its class, or its crash named."""
    import signal

    from .. import errors

    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    doc = json.loads(lines[-1]) if lines else {}
    if res.returncode == 0 and "arena_bytes" in doc:
        return int(doc["arena_bytes"])
    if "error" in doc:
        cls = getattr(errors, doc["error"]["type"], RuntimeBackendError)
        raise cls(doc["error"]["problem"], path=where, fix=doc["error"]["fix"])
    how = f"crashed with {signal.Signals(-res.returncode).name}" if res.returncode < 0 else f"exited {res.returncode}"
    raise RuntimeBackendError(
        f"the TFLM interpreter {how} while allocating the model ({res.stderr.strip()[-200:]})",
        path=where,
        fix="this graph does not run under TFLM; check it runs in LiteRT, re-export",
    )


def _measure_arena_here(tflite: bytes | str | Path) -> int:
    """The smallest tensor arena, in bytes, with which TFLM allocates and runs the model.

    Method: the arena is what ``MicroInterpreter::AllocateTensors()`` needs (every kernel asks for
    its scratch in Prepare, and Invoke allocates nothing), so the interpreter is built with a given
    ``arena_size`` and either succeeds or fails. Doubling from 64 KiB finds a size that succeeds,
    then a binary search to the byte finds the smallest; one invoke at that size confirms it. This
    needs no parsing of ``print_allocations`` output (whose "Requested" figure is only the
    allocation that failed, not the total). The figure is for TFLM's reference kernels as the
    ``tflite-micro`` host build uses them; the arena is allocated 16-byte aligned on the host,
    as ``alignas(16)`` does on the device.

    Raises:
        UnsupportedError: the model cannot run under TFLM (checked first, see :func:`check_tflm`).
        RuntimeBackendError: TFLM fails to allocate even with 1 GiB (the log is in the message).
    """
    where = None if isinstance(tflite, (bytes, bytearray)) else tflite
    data = _bytes(tflite)
    lo, hi = 0, 64 * 1024  # lo fails (or is 0), hi is being searched for success
    while True:
        interp, log = _interpreter(data, hi)
        if interp is not None:
            break
        if hi >= _ARENA_CAP:
            raise RuntimeBackendError(
                "TFLM could not allocate the model even with a 1 GiB arena: " + " | ".join(log[-3:]),
                path=where,
                fix="check the file runs in LiteRT; report the TFLM log above",
            )
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _interpreter(data, mid)[0] is not None:
            hi = mid
        else:
            lo = mid
    session = TFLMSession(_interpreter(data, hi)[0], hi)
    session.run(np.zeros((1, *session.input_spec.shape[1:]), np.float32))  # raises if Invoke fails
    return hi


class TFLMSession:
    """A model loaded in the TFLM host interpreter (real TFLM kernels), batch 1 at a time.

    Implements :class:`edgetransfer.runtime.base.Session`: ``run`` takes [0, 255] RGB NHWC
    float32 images, quantizes them as :func:`quantize_input` does and returns float32
    probabilities (the output dequantized).
    """

    def __init__(self, interp, arena_bytes: int | None = None):
        self.interp = interp
        self.arena_bytes = arena_bytes
        inp, out = interp.get_input_details(0), interp.get_output_details(0)
        q_in, q_out = inp["quantization_parameters"], out["quantization_parameters"]
        scale = float(q_in["scales"][0]) if len(q_in["scales"]) else None
        self.input_spec = InputSpec(
            tuple(int(d) for d in inp["shape"]),
            np.dtype(inp["dtype"]).name,
            "NHWC",
            scale,
            int(q_in["zero_points"][0]) if scale else None,
        )
        self._out_scale = float(q_out["scales"][0]) if len(q_out["scales"]) else None
        self._out_zp = int(q_out["zero_points"][0]) if self._out_scale else 0

    @classmethod
    def load(cls, path: str | Path, arena_bytes: int | None = None) -> TFLMSession:
        """Check ``path`` (:func:`check_tflm`) and load it with ``arena_bytes`` (default: measured)."""
        data = require_file(path).read_bytes()
        check_tflm(data, path=path)
        arena = measure_arena(data) if arena_bytes is None else arena_bytes
        interp, log = _interpreter(data, arena)
        if interp is None:
            raise RuntimeBackendError(
                f"TFLM could not allocate the model in {arena} bytes: " + " | ".join(log[-2:]),
                path=path,
                fix="give a larger arena (see measure_arena)",
            )
        return cls(interp, arena)

    def run(self, batch: np.ndarray) -> np.ndarray:
        q = quantize_input(np.asarray(batch, np.float32), self.input_spec)
        outs = [np.zeros((0, 0), np.float32)] if not len(q) else []
        for image in q:
            self.interp.set_input(image[None], 0)
            self.interp.invoke()
            outs.append(np.array(self.interp.get_output(0)).reshape(1, -1))
        out = np.concatenate(outs).astype(np.float32)
        if self._out_scale:
            out = (out - self._out_zp) * self._out_scale
        return out.astype(np.float32)


class TFLM:
    """The TFLM host interpreter as a :class:`edgetransfer.runtime.base.Runtime`."""

    name = "tflm"
    formats = ("tflite",)

    def version(self) -> str:
        _runtime()
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"tflite-micro {version('tflite-micro')}"
        except PackageNotFoundError:
            return "tflite-micro ?"

    def load(self, path: str | Path, threads: int | None = None) -> TFLMSession:
        """``threads`` is ignored: TFLM is single-threaded."""
        return TFLMSession.load(path)


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class TFLMExport:
    """What :func:`export_tflm` wrote, and the figures a budget check needs."""

    tflite: Path
    cc: Path
    header: Path
    manifest: Path
    arena_bytes: int
    flash_bytes: int
    ops: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "tflite": self.tflite.name,
            "cc": self.cc.name,
            "header": self.header.name,
            "arena_bytes": self.arena_bytes,
            "flash_bytes": self.flash_bytes,
            "ops": list(self.ops),
        }


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to a hidden temporary beside ``path``; return it (renamed by the caller)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    return tmp


def export_tflm(int8_tflite_path: str | Path, out_dir: str | Path, *, name: str = "g_model") -> TFLMExport:
    """Write a TFLM bundle: ``<file>.tflite`` (a copy), ``model_data.cc``, ``model_data.h`` and
    ``tflm_manifest.json`` (arena bytes, flash bytes = the model's bytes, ops).

    Every check and the arena measurement happen before anything is written; each file is
    written under a temporary name and renamed once all of them are complete, so a failure
    leaves no partial file.

    Raises:
        UnsupportedError: the file cannot run under TFLM (before anything is written).
        ExportError: writing the bundle failed (temporaries removed).
    """
    src = require_file(int8_tflite_path)
    data = src.read_bytes()
    ops = check_tflm(data, path=src)
    arena = measure_arena(data)
    cc, h = to_c_source(data, name=name, arena_bytes=arena, header="model_data.h", source=str(src))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "tflite": out / src.name,
        "cc": out / "model_data.cc",
        "header": out / "model_data.h",
        "manifest": out / "tflm_manifest.json",
    }
    result = TFLMExport(paths["tflite"], paths["cc"], paths["header"], paths["manifest"], arena, len(data), tuple(ops))
    doc = {
        "kind": "edgetransfer.tflm",
        "schema": 1,
        "edgetransfer": __version__,
        "source": str(src),
        "sha256": hashlib.sha256(data).hexdigest(),
        "array": name,
        **result.to_json(),
        "resolver": resolver_calls(ops),
        "arena_method": "binary search on TFLM AllocateTensors (reference kernels)",
    }
    contents = {
        "tflite": data,
        "cc": cc.encode(),
        "header": h.encode(),
        "manifest": json.dumps(doc, indent=2).encode(),
    }
    temps: dict[str, Path] = {}
    try:
        for key, body in contents.items():
            if key == "tflite" and paths[key].resolve() == src.resolve():
                continue  # exporting beside the source: it is already there
            temps[key] = _atomic_write(paths[key], body)
        for key, tmp in temps.items():
            os.replace(tmp, paths[key])
    except OSError as exc:
        raise ExportError(
            f"writing the TFLM bundle failed: {exc}", path=out, fix="check the folder is writable and has space"
        ) from exc
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------- budgets and latency


def estimate_latency(tflite_path: str | Path, profile):
    """Estimated latency of a full-int8 file on a ``runtime: tflm`` profile (labelled ``estimated``).

    Reuses :func:`edgetransfer.latency.estimate`, whose ``Device`` schema fits a microcontroller:
    the profile's ``device.peak_gmacs.int8`` is ``clock_mhz x int8 MACs/cycle / 1000``, so each
    op costs ``max(MACs / (clock x MACs_per_cycle x efficiency[kind]), bytes / memory_gbps)``
    plus ``per_op_us``, summed with ``fixed_ms``.
    """
    from .. import graphops, latency

    if profile.device is None:
        raise ConfigError(
            f"target {profile.name} has no 'device' section",
            path=profile.path or None,
            fix="add device: {peak_gmacs: {int8: ...}, memory_gbps: ..., efficiency: ...}",
        )
    est = latency.estimate(graphops.tflite_ops(tflite_path), profile.device, "int8")
    clock = profile.clock_mhz
    detail = {
        **est.detail,
        "clock_mhz": clock,
        "formula": "sum over ops of max(MACs / (peak x efficiency), "
        "bytes / bandwidth) + per_op_us; peak = clock_mhz x MACs/cycle",
    }
    if clock:
        detail["int8_macs_per_cycle"] = round(float(profile.device.peak_gmacs["int8"]) * 1e3 / clock, 3)
    return replace(est, detail=detail)


def fits(arena_bytes: int, flash_bytes: int, profile) -> dict:
    """Whether the arena and the model fit the part and its budgets, and where the arena would live.

    The arena must be one block: it goes in SRAM when it fits ``memory.arena_max_kb`` (default
    ``sram_kb``), else in PSRAM when the part has enough, else nowhere. Budgets ``ram_kb`` /
    ``flash_kb`` default to the part's memory (SRAM + PSRAM, flash).
    """
    mem = profile.memory
    if mem is None:
        raise ConfigError(
            f"target {profile.name} has no 'memory' section",
            path=profile.path or None,
            fix="add memory: {sram_kb: ..., flash_kb: ..., psram_kb: ...}",
        )
    kib = 1024
    arena_in = (
        "sram"
        if arena_bytes <= (mem.arena_max_kb or mem.sram_kb) * kib
        else "psram"
        if arena_bytes <= mem.psram_kb * kib
        else None
    )
    ram_budget = int((profile.budgets.ram_kb or mem.sram_kb + mem.psram_kb) * kib)
    flash_budget = int(min(profile.budgets.flash_kb or mem.flash_kb, mem.flash_kb) * kib)
    ram_ok = arena_in is not None and arena_bytes <= ram_budget
    flash_ok = flash_bytes <= flash_budget
    return {
        "target": profile.name,
        "arena_bytes": int(arena_bytes),
        "flash_bytes": int(flash_bytes),
        "arena_in": arena_in,
        "ram_budget_bytes": ram_budget,
        "flash_budget_bytes": flash_budget,
        "ram_ok": ram_ok,
        "flash_ok": flash_ok,
        "fits": ram_ok and flash_ok,
    }


def _main(argv: list[str]) -> int:
    """``python -m edgetransfer.formats.tflm arena MODEL``: the child of :func:`measure_arena`."""
    from ..errors import EdgeTransferError

    try:
        print(json.dumps({"arena_bytes": _measure_arena_here(Path(argv[1]))}))
    except EdgeTransferError as exc:
        err = {"type": type(exc).__name__, "problem": exc.problem, "fix": exc.fix}
        print(json.dumps({"error": err}))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))


def require_tflm_ops(path: str | Path) -> None:
    """Refuse a file using an op TFLM lacks (the runtime registry's ``ops`` hook)."""
    check_tflm(Path(path).read_bytes(), path=path)


def memory_fit(path: str | Path, size_bytes: int, profile) -> dict:
    """Arena (measured by the real TFLM interpreter) and flash bytes against the part (the ``memory`` hook)."""
    require_tflm_ops(path)
    return fits(measure_arena(path), size_bytes, profile)
