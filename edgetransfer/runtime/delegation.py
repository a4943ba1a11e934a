"""Observe delegation: load a file in a runtime and read back which nodes its accelerator took.

Each host runtime registers its observer (``RuntimeSpec.observer``); :func:`observe` calls it.

- LiteRT: the Interpreter with its default delegate (XNNPACK) appends one ``DELEGATE`` node per
  partition it took (tensorflow/lite/core/subgraph.cc, ReplaceNodeSubsetsWithDelegateKernels); the
  original nodes a delegate node replaced are found by walking back from its outputs to its inputs.
  ``CompiledModel.is_fully_accelerated()`` (ai_edge_litert 2.x) is asked too and kept as the runtime's word.
- ONNX Runtime: one profiled run; every node event names the execution provider that ran it
  (onnxruntime/core/common/profiler.cc, ``args.provider``), on the graph as optimised for the session.
- OpenVINO: the compiled model's runtime graph (``get_runtime_model()``), each layer with the
  precision it ran in (``runtimePrecision``); the CPU plugin takes every layer.

No TensorFlow; ``runtime`` extra only (OpenVINO with its own extra).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from .. import _lazy
from ..records.delegation import Delegation
from . import litert_compiled
from . import spec as runtime_spec

# LiteRT ops at the quantized graph's boundary: converting to or from int8 is not "computing in float".
_TFL_BOUNDARY = ("QUANTIZE", "DEQUANTIZE")
_ORT_BOUNDARY = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
_OV_BOOKKEEPING = ("Input", "Output", "Parameter", "Result", "Const", "Constant", "Reorder")
_FLOAT = ("float32", "float16", "f32", "f16", "bf16", "float", "FP32", "FP16", "BF16")


def observe(path: str | Path, runtime: str, provider: str = "cpu", threads: int | None = None) -> Delegation | None:
    """How ``runtime`` (a registry name) delegated ``path`` when loaded here, or None where it has no observer."""
    spec = runtime_spec.get(runtime)
    if not spec.observer:
        return None
    return runtime_spec._resolve(spec.observer)(Path(path), provider, threads)


def _walk_back(outputs, stop: set, producer: dict, nodes: dict) -> set:
    """Indices of the nodes producing ``outputs`` back to the tensors in ``stop`` (a delegate's inputs)."""
    found: set = set()
    stack = [int(t) for t in outputs]
    while stack:
        t = stack.pop()
        if t in stop or t not in producer or producer[t] in found:
            continue
        found.add(producer[t])
        stack += [int(i) for i in nodes[producer[t]]["inputs"] if i >= 0]
    return found


def observe_litert(path: Path, provider: str = "cpu", threads: int | None = None) -> Delegation:
    """XNNPACK's share of ``path`` in LiteRT, the nodes it left to the builtin kernels, and the float ops."""
    from .litert import interpreter_module, quiet_native_stderr

    mod = interpreter_module()
    with quiet_native_stderr():
        interp = mod.Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()  # the default delegate is applied here
    fully = _compiled_word(path, threads)  # LiteRT().load quiets stderr itself (its lock is not reentrant)
    ops = interp._get_ops_details()  # the only node listing the Python API has (private, stable since TF 2.3)
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    nodes = {o["index"]: o for o in ops if o["op_name"] != "DELEGATE"}
    producer = {int(t): i for i, o in nodes.items() for t in o["outputs"]}
    taken: set = set()
    for d in delegates:
        taken |= _walk_back(d["outputs"], {int(t) for t in d["inputs"]}, producer, nodes)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    floats = [
        o["op_name"]
        for o in nodes.values()
        if o["op_name"] not in _TFL_BOUNDARY and any(dtypes.get(int(t)) in _FLOAT for t in o["outputs"])
    ]
    return Delegation(
        runtime="litert",
        accelerator="XNNPACK",
        nodes_total=len(nodes),
        nodes_accelerated=len(taken),
        partitions=len(delegates),
        fallback_ops=tuple(o["op_name"] for i, o in sorted(nodes.items()) if i not in taken),
        api=litert_compiled.API_COMPILED if fully is not None else litert_compiled.API_INTERPRETER,
        fully_accelerated=fully,
        float_ops=len(floats),
        float_op_types=tuple(sorted(set(floats))),
    )


def _compiled_word(path: Path, threads: int | None) -> bool | None:
    """``CompiledModel.is_fully_accelerated()`` for the CPU accelerator, or None without LiteRT 2.x (or a file
    the CompiledModel path does not take)."""
    if not litert_compiled.available():
        return None
    from .litert import LiteRT

    session = LiteRT().load(path, threads)
    return getattr(session, "fully_accelerated", None)


def observe_ort(path: Path, provider: str = "cpu", threads: int | None = None) -> Delegation:
    """The execution provider of every node of ``path`` in one profiled ONNX Runtime run."""
    from .onnxrt import PROVIDERS, OnnxRuntime, session_options

    ort = _lazy.require("onnxruntime", extra="runtime")
    OnnxRuntime(provider)  # refuses an unknown provider, naming the known ones
    wanted = PROVIDERS[provider]
    with tempfile.TemporaryDirectory(prefix="et-ortprof-") as tmp:
        opts = session_options(threads, None, profile_prefix=str(Path(tmp) / "p"))
        providers = list(dict.fromkeys([wanted, "CPUExecutionProvider"]))
        available = set(ort.get_available_providers())
        sess = ort.InferenceSession(str(path), opts, providers=[p for p in providers if p in available])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        dtype = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float16)": np.float16}.get(inp.type)
        sess.run(None, {inp.name: np.zeros(shape, dtype or np.float32)})
        events = json.loads(Path(sess.end_profiling()).read_text())
    nodes = [e["args"] for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    on = [n for n in nodes if n.get("provider") == wanted]
    floats = [
        n.get("op_name", "?")
        for n in nodes
        if n.get("op_name") not in _ORT_BOUNDARY
        and any(k in ("float", "float16") for d in n.get("output_type_shape", []) for k in d)
    ]
    return Delegation(
        runtime="onnxruntime",
        accelerator=wanted,
        nodes_total=len(nodes),
        nodes_accelerated=len(on),
        partitions=_runs(n.get("provider") == wanted for n in nodes),
        fallback_ops=tuple(n.get("op_name", "?") for n in nodes if n.get("provider") != wanted),
        float_ops=len(floats),
        float_op_types=tuple(sorted(set(floats))),
        note="" if wanted in available else f"{wanted} is not in this onnxruntime build: every node ran on the CPU",
    )


def _runs(flags) -> int:
    """How many runs of consecutive True there are (a provider's partitions, in execution order)."""
    count, prev = 0, False
    for f in flags:
        count += bool(f and not prev)
        prev = bool(f)
    return count


def observe_openvino(path: Path, provider: str = "cpu", threads: int | None = None) -> Delegation:
    """OpenVINO's CPU plugin runtime graph of ``path``: its layers and the ones that ran in float."""
    from .openvino import DEVICE, OpenVINO

    session = OpenVINO().load(path, threads)
    layers = []
    for op in session.compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str)
        if kind in _OV_BOOKKEEPING:
            continue
        layers.append((kind, rt["runtimePrecision"].astype(str), rt["outputPrecisions"].astype(str)))
    floats = [k for k, prec, out in layers if prec in _FLOAT and out in _FLOAT]
    return Delegation(
        runtime="openvino",
        accelerator=DEVICE,
        nodes_total=len(layers),
        nodes_accelerated=len(layers),
        partitions=1 if layers else 0,
        float_ops=len(floats),
        float_op_types=tuple(sorted(set(floats))),
        note="the CPU plugin runs every layer; nodes are its runtime graph's (fused), not the file's",
    )
