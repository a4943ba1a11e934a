"""This host's peak compute, measured once with a timed GEMM and cached: the roofline a profile is read against."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .. import _lazy

# M = N = K of the peak GEMMs, best of the three: 768 reaches MLAS's full fp32 speed on a quiet host, but
# one fp32 run of it (~10-35 ms) spans several scheduler slices on a loaded one, where 256 and 512 (under
# a millisecond to a few) fit in one and give the higher figure. A peak is a best case.
GEMM_SIZES = (256, 512, 768)


def cache_dir() -> Path:
    """``$EDGETRANSFER_CACHE``, else ``$XDG_CACHE_HOME/edgetransfer``, else ``~/.cache/edgetransfer``."""
    if os.environ.get("EDGETRANSFER_CACHE"):
        return Path(os.environ["EDGETRANSFER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgetransfer"


def gemm_model(n: int, precision: str) -> bytes:
    """A one-node ONNX GEMM: fp32 ``MatMul``, or int8 ``MatMulInteger`` (uint8 x int8, B a constant weight)."""
    _lazy.require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if precision == "fp32":
        inits = [numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "B")]
        node, in_t, out_t, inputs = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, ["A", "B"]
    else:
        inits = [
            numpy_helper.from_array(rng.integers(-127, 127, (n, n)).astype(np.int8), "B"),
            numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
            numpy_helper.from_array(np.array(0, np.int8), "b_zp"),
        ]
        node, in_t, out_t, inputs = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32, ["A", "B", "a_zp", "b_zp"]
    graph = helper.make_graph(
        [helper.make_node(node, inputs, ["Y"])],
        f"gemm_{precision}",
        [helper.make_tensor_value_info("A", in_t, [n, n])],
        [helper.make_tensor_value_info("Y", out_t, [n, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _fastest_s(run, budget_s: float) -> float:
    """Fastest seconds of ``run()`` after a warm-up, at least 5 runs: a peak is a best case, and on a
    shared machine the fastest run is the one least disturbed."""
    run()
    samples: list[float] = []
    end = time.perf_counter() + budget_s
    while len(samples) < 5 or time.perf_counter() < end:
        t = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t)
    return min(samples)


def measure_peak(threads: int, budget_s: float = 1.0) -> dict[str, float]:
    """``{"fp32": GMAC/s, "int8": GMAC/s}`` of ONNX Runtime's GEMMs (MLAS: AVX-512 FMA, VNNI/AMX for
    uint8 x int8) at ``threads``, the best over :data:`GEMM_SIZES`."""
    ort = _lazy.require("onnxruntime", extra="runtime")
    out: dict[str, float] = {}
    for n in GEMM_SIZES:
        for prec in ("fp32", "int8"):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(gemm_model(n, prec), opts, providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(1)
            a = rng.integers(0, 255, (n, n)).astype(np.uint8) if prec == "int8" else rng.standard_normal((n, n))
            feed = {"A": a.astype(np.uint8 if prec == "int8" else np.float32)}
            out[prec] = max(
                out.get(prec, 0.0), n**3 / _fastest_s(lambda s=sess, f=feed: s.run(None, f), budget_s) / 1e9
            )
    return out


def _host_key(threads: int) -> str:
    from .latency import host_info

    ort = _lazy.require("onnxruntime", extra="runtime")
    h = host_info()
    return f"{h['cpu']}|{h['cores']} cores|onnxruntime {ort.__version__}|{threads} threads"


def host_peak(threads: int | None, refresh: bool = False) -> dict[str, float]:
    """This host's fp32/int8 GEMM peak at ``threads`` (default: all cores), measured once and cached in
    ``cache_dir()/peaks.json``; ``{}`` when ONNX Runtime or ``onnx`` is missing."""
    threads = threads or os.cpu_count() or 1
    try:
        key = _host_key(threads)
    except Exception:  # MissingDependencyError: no ONNX Runtime, no peak
        return {}
    path = cache_dir() / "peaks.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not refresh and isinstance(cached.get(key), dict):
        return {k: float(v) for k, v in cached[key].items() if k in ("fp32", "int8")}
    try:
        peak = measure_peak(threads)
    except Exception:  # no onnx to build the GEMM graphs: rate nothing rather than fail the profile
        return {}
    cached[key] = {**peak, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return peak
