"""Where the milliseconds go: per-op time from each runtime, joined to the graph's ops and the host's peak.

``profile(path, runtime_name, threads, runs)`` returns an :class:`OpProfile` (a record,
:mod:`edgetransfer.records.profile`) from the runtime's registered profiler
(``RuntimeSpec.profiler``: :func:`profile_ort`, :func:`profile_ov`, :func:`profile_litert`):

- ONNX Runtime: its profiling JSON (``SessionOptions.enable_profiling``, ``end_profiling()``), the
  ``Node`` events named ``<node>_kernel_time`` with ``dur`` in microseconds.
- OpenVINO: the CPU plugin's performance counters (``PERF_COUNT``,
  ``InferRequest.get_profiling_info()``), ``real_time`` per executed node and its kernel (``exec_type``).
- LiteRT: the Python ``Interpreter`` of ``ai_edge_litert`` exposes no op profiler (its only profiling
  switch, ``experimental_force_delegate_node_profiling``, feeds a native profiler Python cannot
  attach), so the answer is ``supported=False`` with that reason and the end-to-end mean only. On a
  runner target LiteRT's own ``benchmark_model --enable_op_profiling=true`` gives the table:
  :func:`edgetransfer.runtime.op_table.parse_benchmark_model` reads it.

Each op is joined by name to the graph's ops (:mod:`edgetransfer.exporter.formats.graphops`: kind, shape, MACs,
bytes, the Keras layer its name scope names: :func:`keras_layers`) and rated against this host's
measured GEMM peak (:func:`host_peak`, cached), worst first: the ops that lose the most milliseconds
against the peak lead. Needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _lazy
from ..errors import ConfigError, RuntimeBackendError
from ..records.profile import OpProfile, OpTime, short_name
from .base import require_file
from .peak import host_peak

# ONNX Runtime / OpenVINO op types and kernels that compute in int8 (rated against the int8 peak).
_INT8_TYPES = {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul"}
_INT8_KERNEL = re.compile(r"(^|_)(I8|U8)($|_)", re.IGNORECASE)
# Suffixes ONNX Runtime's graph transformers append to the node they rewrite (QDQ -> QLinearConv adds
# "_quant"; layout transforms add "_nchwc"); stripped to find the source node.
_ORT_SUFFIXES = ("_kernel_time", "_quant", "_nchwc", "_fused")
_ORT_TOKEN = re.compile(r"_token_\d+$")  # the QDQ -> QLinear* transformer names its node <node>_token_<n>


def unsupported(model: str, runtime: str, threads: int | None, reason: str, wall_ms: float = 0.0) -> OpProfile:
    """A profile that says why there is none (the runtime gives no per-op times), never a made-up table."""
    return OpProfile(str(model), runtime, threads, 0, 0.0, wall_ms, supported=False, reason=reason)


# --- the host's peak -------------------------------------------------------------------------------


# --- the graph's ops, by name ----------------------------------------------------------------------


@dataclass(frozen=True)
class GraphOp:
    """An op of the file as exported: name, type, output shape and :class:`graphops.Op` facts."""

    name: str
    type: str
    kind: str
    shape: tuple
    macs: int
    weight_bytes: int
    act_bytes: int
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


def onnx_graph_ops(path: str | Path) -> list[GraphOp]:
    """The ONNX file's nodes with names (``graphops.onnx_ops`` walks the same nodes in the same order)."""
    onnx = _lazy.require("onnx")
    from ..exporter.formats import graphops

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    shapes = {
        v.name: tuple(d.dim_value or 1 for d in v.type.tensor_type.shape.dim)
        for v in list(g.value_info) + list(g.output) + list(g.input)
    }
    out = []
    for node, op in zip(g.node, graphops.onnx_ops(path)):
        name = node.name or (node.output[0] if node.output else node.op_type)
        shape = shapes.get(node.output[0], ()) if node.output else ()
        out.append(
            GraphOp(
                name,
                node.op_type,
                op.kind,
                shape,
                op.macs,
                op.weight_bytes,
                op.act_bytes,
                tuple(node.input),
                tuple(node.output),
            )
        )
    return out


def _graph_ops(path: Path) -> list[GraphOp]:
    try:
        return onnx_graph_ops(path) if path.suffix == ".onnx" else []
    except Exception:  # no onnx package, or a graph shape inference rejects: profile without the join
        return []


def _index(graph: list[GraphOp]) -> dict[str, GraphOp]:
    """Graph ops by node name, then by output tensor name (ONNX Runtime names a node it rewrites after
    its output: a fused Conv+Relu in NCHWc layout becomes ``<relu output>_nchwc``)."""
    out = {g.name: g for g in graph}
    for g in graph:
        for o in g.outputs:
            out.setdefault(o, g)
    return out


def _match(name: str, by_name: dict[str, GraphOp]) -> GraphOp | None:
    """The graph op a runtime's op name stands for: the same name, the name without the suffixes the
    runtime adds, or the longest graph name it starts with (OpenVINO's ``conv/WithoutBiases``)."""
    if name in by_name:
        return by_name[name]
    base = _ORT_TOKEN.sub("", name)
    for suffix in _ORT_SUFFIXES:
        base = base.removesuffix(suffix)
    if base in by_name:
        return by_name[base]
    best = max((n for n in by_name if len(n) > 2 and base.startswith(n + "/")), key=len, default=None)
    return by_name[best] if best else None


def _with_macs(g: GraphOp, op_type: str, by_name: dict[str, GraphOp]) -> GraphOp:
    """A conv/matmul the runtime fused with the activations after it carries the activations' name:
    walk back up to 4 single-input 0-MAC producers to the op with the MACs."""
    if g.macs or not any(k in op_type for k in ("Conv", "MatMul", "Gemm", "FullyConnected")):
        return g
    cur = g
    for _ in range(4):
        prev = next((by_name[i] for i in cur.inputs if i in by_name and i not in cur.outputs), None)
        if prev is None:
            return g
        if prev.macs:
            return prev
        cur = prev
    return g


def _precision(op_type: str, kernel: str, graph: GraphOp | None) -> str:
    if op_type in _INT8_TYPES or _INT8_KERNEL.search(kernel or ""):
        return "int8"
    return "fp32"


_SCOPE_NOISE = re.compile(r"^(StatefulPartitionedCall(_\d+)?|PartitionedCall|serving_default)$")
# A Keras layer's ops sit at most this deep below its name scope (``stem_bn/batchnorm/mul_1``); a
# model's scope (the classifier, a nested backbone) holds its layers' scopes, so deeper.
_LAYER_DEPTH = 2


def _scope(name: str) -> list[str]:
    return [p for p in _NODE_INDEX.sub("", short_name(name)).split("/") if p and not _SCOPE_NOISE.match(p)]


def keras_layers(names: list[str], others: Sequence[str] = ()) -> dict[str, str]:
    """``{op name: Keras layer}`` for ``names`` and ``others``, where the names keep the layers' name
    scopes (tf2onnx and the TFLite converter name ops ``<model>/<nested model>/<layer>/<op>``; TFLite
    fuses several as ``[a;b]:12``): the outermost scope under which no op of ``names`` (the graph's own)
    lies more than two levels deep. ``others`` (a runtime's names, which add suffixes such as OpenVINO's
    ``/WithoutBiases``) are placed in the graph's scopes, not counted. A name with no scope gets none."""
    depth: dict[tuple[str, ...], int] = {}  # scope -> deepest op below it
    for parts in map(_scope, names):
        for i in range(1, len(parts)):
            key = tuple(parts[:i])
            depth[key] = max(depth.get(key, 0), len(parts) - i)
    out = {}
    for n in [*names, *others]:
        parts = _scope(n)
        keys = (tuple(parts[:i]) for i in range(1, len(parts)))
        out[n] = next((k[-1] for k in keys if depth.get(k, _LAYER_DEPTH + 1) <= _LAYER_DEPTH), "")
    return out


def join(raw: list[tuple[str, str, str, float]], runs: int, graph: list[GraphOp], peaks: dict) -> tuple[OpTime, ...]:
    """``(name, type, kernel, total ms over runs)`` rows -> :class:`OpTime` per op, worst first.

    A graph op matched by several runtime ops (a node split in two) gives its MACs to the first only.
    """
    by_name = _index(graph)
    layers = keras_layers([g.name for g in graph] or [r[0] for r in raw], [r[0] for r in raw] if graph else [])
    total = sum(r[3] for r in raw) / max(runs, 1)
    used: set[str] = set()
    out = []
    for name, op_type, kernel, ms in raw:
        ms /= max(runs, 1)
        g = _match(name, by_name)
        g = _with_macs(g, op_type, by_name) if g is not None else None
        if g is not None and g.name in used:
            g = None
        if g is not None:
            used.add(g.name)
        prec = _precision(op_type, kernel, g)
        macs = g.macs if g else 0
        gmacs = macs / (ms / 1e3) / 1e9 if macs and ms > 0 else None
        peak = peaks.get(prec)
        out.append(
            OpTime(
                name,
                op_type,
                ms,
                ms / total if total else 0.0,
                kernel,
                g.kind if g else "",
                g.shape if g else (),
                macs,
                g.weight_bytes if g else 0,
                g.act_bytes if g else 0,
                prec,
                gmacs,
                gmacs / peak if gmacs and peak else None,
                layers.get(g.name if g else name, ""),
            )
        )
    return tuple(sorted(out, key=lambda o: -o.lost_ms))


# --- the runtimes ----------------------------------------------------------------------------------


def _feed(shape, dtype: str) -> np.ndarray:
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    rng = np.random.default_rng(0)
    if dtype in ("uint8", "int8"):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape).astype(dtype)
    return rng.uniform(0, 255, shape).astype(dtype)


def ort_session(path: Path, threads: int | None, settings: dict | None = None, profile_prefix: str = ""):
    """An ONNX Runtime CPU session with ``settings`` (:func:`edgetransfer.runtime.onnxrt.session_options`)."""
    ort = _lazy.require("onnxruntime", extra="runtime")
    from .onnxrt import session_options

    opts = session_options(threads, settings, profile_prefix)
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RuntimeBackendError(f"ONNX Runtime could not load the model ({exc})", path=path) from None


def _ort_feed(sess) -> dict:
    types = {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(uint8)": "uint8",
        "tensor(int8)": "int8",
    }
    return {i.name: _feed(i.shape, types.get(i.type, "float32")) for i in sess.get_inputs()}


def ort_events(trace: list[dict], runs: int) -> tuple[list[tuple[str, str, str, float]], float]:
    """Per-node ``(name, op type, provider, total ms)`` over the last ``runs`` ``model_run`` events of an
    ONNX Runtime profile, and their mean wall ms (warm-up runs before them are left out)."""
    model_runs = sorted((e for e in trace if e.get("name") == "model_run"), key=lambda e: e["ts"])[-runs:]
    if not model_runs:
        return [], 0.0
    start = model_runs[0]["ts"]
    acc: dict[str, list] = {}
    for e in trace:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e["ts"] < start:
            continue
        name = e["name"].removesuffix("_kernel_time")
        args = e.get("args", {})
        row = acc.setdefault(name, [name, args.get("op_name", "?"), args.get("provider", ""), 0.0])
        row[3] += e["dur"] / 1e3
    wall = sum(e["dur"] for e in model_runs) / 1e3 / len(model_runs)
    return [(str(n), str(t), str(k), float(ms)) for n, t, k, ms in acc.values()], wall


def profile_ort(path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> OpProfile:
    """ONNX Runtime's profiling JSON over ``runs`` runs after ``warmup``."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(path, threads, settings, profile_prefix=str(Path(tmp) / "ort"))
        feed = _ort_feed(sess)
        for _ in range(warmup + runs):
            sess.run(None, feed)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    raw, wall = ort_events(trace, runs)
    raw = [(n, t, "", ms) for n, t, _prov, ms in raw]  # one provider (CPU): the column says nothing
    ops = join(raw, runs, _graph_ops(path), host_peak(threads))
    return OpProfile(
        str(path),
        "onnxruntime",
        threads,
        runs,
        sum(o.time_ms for o in ops),
        wall,
        ops,
        host_peak(threads),
        "onnxruntime profiling JSON (Node kernel_time events)",
        settings=dict(settings or {}),
    )


def ov_compile(path: Path, threads: int | None, settings: dict | None = None, perf_count: bool = False):
    """An OpenVINO CPU ``CompiledModel`` with ``settings`` (:func:`edgetransfer.runtime.openvino.compile_config`:
    f32 and the LATENCY hint unless they say otherwise)."""
    from .openvino import compile_config, core

    config = compile_config(threads, settings)
    if perf_count:
        config["PERF_COUNT"] = True
    ov_core = core()  # one per process: Cores freed out of order crashed the next signal (runtime/openvino.py)
    try:
        return ov_core.compile_model(ov_core.read_model(str(path)), "CPU", config)
    except Exception as exc:
        raise RuntimeBackendError(f"OpenVINO could not compile the model for CPU ({exc})", path=path) from None


def _ov_feed(compiled) -> dict:
    types = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8"}
    out = {}
    for i, port in enumerate(compiled.inputs):
        shape = [d.get_length() if d.is_static else 1 for d in port.get_partial_shape()]
        out[i] = _feed(shape, types.get(port.get_element_type().get_type_name(), "float32"))
    return out


def profile_ov(path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> OpProfile:
    """OpenVINO's performance counters over ``runs`` infers after ``warmup``."""
    compiled = ov_compile(path, threads, settings, perf_count=True)
    req = compiled.create_infer_request()
    feed = _ov_feed(compiled)
    for _ in range(warmup):
        req.infer(feed)
    acc: dict[str, list] = {}
    wall = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        req.infer(feed)
        wall += time.perf_counter() - t
        for info in req.get_profiling_info():  # the counters of the last infer
            if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_RUN"):
                row = acc.setdefault(info.node_name, [info.node_name, info.node_type, info.exec_type, 0.0])
                row[3] += info.real_time.total_seconds() * 1e3
    raw = [(n, t, k, ms) for n, t, k, ms in acc.values() if t not in ("Parameter", "Result", "Constant")]
    ops = join(raw, runs, _graph_ops(path), host_peak(threads))
    return OpProfile(
        str(path),
        "openvino",
        threads,
        runs,
        sum(o.time_ms for o in ops),
        wall * 1e3 / runs,
        ops,
        host_peak(threads),
        "OpenVINO performance counters (PERF_COUNT, real_time)",
        settings=dict(settings or {}),
    )


LITERT_REASON = (
    "ai_edge_litert's Python Interpreter exposes no op profiler (only experimental_force_delegate_node_profiling, "
    "which feeds a native profiler the Python API cannot attach); use benchmark_model --enable_op_profiling=true "
    "on a runner target"
)


def profile_litert(path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> OpProfile:
    """No op table (:data:`LITERT_REASON`): the end-to-end mean of ``runs`` runs, and why."""
    from .litert import LiteRT

    session = LiteRT().load(path, threads, settings)
    spec = session.input_spec
    batch = np.random.default_rng(0).uniform(0, 255, (1, spec.size, spec.size, 3)).astype(np.float32)
    for _ in range(warmup):
        session.run(batch)
    t = time.perf_counter()
    for _ in range(runs):
        session.run(batch)
    wall = (time.perf_counter() - t) * 1e3 / max(runs, 1)
    return dataclasses.replace(
        unsupported(str(path), "litert", threads, LITERT_REASON, wall), settings=dict(settings or {})
    )


def profile(
    path: str | Path,
    runtime_name: str,
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 5,
    settings: dict | None = None,
) -> OpProfile:
    """Per-op mean time of ``path`` on ``runtime_name``, by the runtime's registered profiler
    (:attr:`~.spec.RuntimeSpec.profiler`).

    ``settings`` are the runtime's own (see :func:`ort_session`, :func:`ov_compile`), e.g. a
    :func:`edgetransfer.runtime.tune.tune` winner's. LiteRT answers ``supported=False``.

    Raises:
        ConfigError: an unknown runtime, or a file the runtime does not read.
        RuntimeBackendError: the runtime cannot load the file.
    """
    from ..exporter import formats
    from . import spec as runtime_spec

    path = require_file(path)
    rt = runtime_spec.get(runtime_name)
    fmt = formats.for_path(path)
    if runtime_name not in fmt.runtimes or not rt.profiler:
        can = " or ".join(r for r in fmt.runtimes if runtime_spec.get(r).profiler) or "a host runtime"
        raise ConfigError(
            f"no per-op profile of a {path.suffix} file on {runtime_name!r}", path=path, fix=f"profile it on {can}"
        )
    return rt.profile(path, threads, runs, warmup, settings)


# --- LiteRT's benchmark_model on a device ----------------------------------------------------------


_NODE_INDEX = re.compile(r":(\d+)$")
