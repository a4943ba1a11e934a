"""Latency: measured (warm-up, time-budgeted runs, percentiles) or estimated (cost model).

Measurement needs only NumPy and a runtime, so ``python -m edgetransfer.runtime bench``
uses it on a Raspberry Pi or a phone with no TensorFlow.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np

from ..records.latency import ESTIMATED, MEASURED, ON_DEVICE, Latency

__all__ = ["ESTIMATED", "MEASURED", "ON_DEVICE", "Latency", "compute_precision", "estimate", "host_info", "measure"]


def host_info(runtime_version: str = "") -> dict:
    """CPU model, cores, OS and Python: what a measured figure is only valid for."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtime": runtime_version,
    }


def _rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def measure(
    load,
    batch: np.ndarray,
    *,
    warmup: int = 5,
    budget_s: float = 2.0,
    min_runs: int = 20,
    max_runs: int = 10_000,
    threads: int | None = None,
    runtime_version: str = "",
) -> Latency:
    """Time ``session.run(batch)``: ``warmup`` untimed runs, then as many as fit ``budget_s``.

    Args:
        load: zero-argument callable returning a session (timed as load_ms).
        batch: the input batch (batch 1 by default).
        warmup: untimed runs first (allocations, caches, JIT).
        budget_s: time budget for timed runs; at least ``min_runs`` run regardless.
    """
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    session = load()
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        session.run(batch)
    samples: list[float] = []
    end = time.perf_counter() + budget_s
    while (len(samples) < min_runs or time.perf_counter() < end) and len(samples) < max_runs:
        t = time.perf_counter()
        session.run(batch)
        samples.append((time.perf_counter() - t) * 1e3)
    a = np.array(samples)
    p50, p90, p99 = (float(np.percentile(a, q)) for q in (50, 90, 99))
    return Latency(
        round(p50, 4),
        round(p90, 4),
        round(p99, 4),
        round(float(a.mean()), 4),
        round(float(a.std()), 4),
        len(a),
        MEASURED,
        round(load_ms, 2),
        round(max(0.0, _rss_mb() - rss0), 2),
        threads,
        tuple(round(s, 4) for s in samples),
        host_info(runtime_version),
    )


def compute_precision(precision: str, peak: dict) -> str:
    """The precision the device computes in: fp16 weights run as fp32 where the device has no
    fp16 rate (CPUs dequantize them), dynamic-range runs float activations."""
    if precision == "fp16":
        return "fp16" if "fp16" in peak else "fp32"
    if precision == "dynamic":
        return "dynamic" if "dynamic" in peak else "fp32"
    if precision == "int16x8":
        return "int16x8" if "int16x8" in peak else "int8"
    return precision


def estimate(ops, device, precision: str) -> Latency:
    """Per-op roofline: each op costs max(MACs / compute rate, bytes / bandwidth) plus a
    dispatch cost; the sum plus a fixed invoke overhead. Always labelled ``estimated``.

    Args:
        ops: :class:`edgetransfer.exporter.formats.graphops.Op` list of the exported file.
        device: the target's :class:`edgetransfer.targets.Device`.
        precision: the artifact's precision.
    """
    prec = compute_precision(precision, device.peak_gmacs)
    rate = float(device.peak_gmacs[prec]) * 1e9
    bw = float(device.memory_gbps) * 1e9
    by_kind: dict[str, float] = {}
    total = device.fixed_ms / 1e3
    for op in ops:
        if op.type in ("DEQUANTIZE", "DequantizeLinear") and op.weight_bytes:
            continue  # weight dequantization: folded once at load by XNNPACK and the delegates
        eff = float(device.efficiency.get(op.kind, device.efficiency.get("other", 1.0)))
        # A device computing in fp16 keeps activations in fp16: half the bytes of the float graph.
        act = op.act_bytes / 2 if prec == "fp16" else op.act_bytes
        t = max(op.macs / (rate * eff) if op.macs else 0.0, (op.weight_bytes + act) / bw)
        t += device.per_op_us / 1e6
        by_kind[op.kind] = by_kind.get(op.kind, 0.0) + t
        total += t
    ms = round(total * 1e3, 3)
    detail = {
        "compute_precision": prec,
        "macs": int(sum(o.macs for o in ops)),
        "ms_by_op_kind": {k: round(v * 1e3, 3) for k, v in sorted(by_kind.items())},
    }
    return Latency(ms, ms, ms, ms, 0.0, 0, ESTIMATED, detail=detail)
