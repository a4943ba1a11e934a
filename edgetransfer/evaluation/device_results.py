"""Benchmark results measured elsewhere (a phone, a board, a device farm), read into the gate.

``check FILE --device-result RESULT`` (and ``validate --device-result``) read one of:

- LiteRT's ``python -m ai_edge_litert.tools.benchmark_litert_model --model F --result_json R``
  (JSON: ``model``, ``model_size_mb`` in MiB to 2 decimals, ``fully_accelerated``, ``accelerators``,
  ``num_threads`` and ``latency`` with ``median_ms``, ``p95_ms``, ``max_ms``, ``avg_ms``, ``std_ms``,
  ``num_runs``, ``init_ms``; ai_edge_litert/tools/benchmark_litert_model.py),
- LiteRT's native ``benchmark_model`` log (``Graph: [F]``, ``The input model file size (MB): X`` with
  MB = 1e6 bytes printed to 6 significant digits, benchmark_model.cc; the ``Inference timings in us``
  summary, :func:`edgetransfer.evaluation.runners.parse_benchmark_model`; its op profile when present),
- ONNX Runtime's ``onnxruntime_perf_test`` output (``Average inference time cost: X ms``, ``Total
  inference requests: N``, ``Session creation time cost: X s`` and, with statistics, ``P50/P90/P99
  Latency: X s``, or ``... Latency is X sec`` in older builds; performance_runner.cc). It names no
  model file, so which file it measured cannot be checked: a note says so.

Every file is untrusted: strict types, finite non-negative figures, errors naming the file and the
key (exit 2). A result naming another model than the artifact (file name or size) is exit 2 too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..records.device import DeviceResult
from ..records.latency import MEASURED, Latency

log = logging.getLogger("edgetransfer")
LITERT_JSON, BENCHMARK_MODEL, PERF_TEST = "benchmark_litert_model", "benchmark_model", "onnxruntime_perf_test"
# A result file is a few KB (benchmark_model with an op profile: tens of KB); more is not one.
MAX_RESULT_BYTES = 8 << 20
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
FIX = {
    LITERT_JSON: "pass the unedited --result_json file of `python -m ai_edge_litert.tools.benchmark_litert_model`",
    BENCHMARK_MODEL: "pass benchmark_model's full log (stdout and stderr)",
    PERF_TEST: "pass onnxruntime_perf_test's full output",
}


def _bad(path: Path, tool: str, problem: str) -> DataError:
    return DataError(f"{tool} result: {problem}", path=path, fix=FIX[tool])


def _number(path: Path, tool: str, doc: dict, key: str, where: str = "", *, integer: bool = False) -> float:
    name = f"{where}{key}"
    if key not in doc:
        raise _bad(path, tool, f"key '{name}' is missing")
    v = doc[key]
    ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok_type or not math.isfinite(v) or v < 0:
        want = "a non-negative integer" if integer else "a finite, non-negative number"
        raise _bad(path, tool, f"key '{name}' is {v!r}, not {want}")
    return float(v)


def read(path: str | Path, device: str | None = None) -> DeviceResult:
    """The result in ``path``, whichever of the three tools wrote it; ``device`` names where it ran.

    Raises:
        DataError: unreadable, of no known tool, or a key missing or of the wrong type (named).
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            raise DataError(
                f"{path.stat().st_size:,} bytes is not a benchmark result (limit {MAX_RESULT_BYTES:,})",
                path=path,
                fix="pass the result file of benchmark_litert_model, benchmark_model or onnxruntime_perf_test",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read the device result ({type(exc).__name__}: {exc})", path=path, fix="pass a text result file"
        ) from None
    if text.lstrip().startswith("{"):
        return _litert_json(path, text, device)
    if "Inference timings in us" in text:
        return _benchmark_model(path, text, device)
    if "Average inference time cost" in text:
        return _perf_test(path, text, device)
    raise DataError(
        "not a result of a benchmark tool edgetransfer reads (no benchmark_litert_model JSON, no benchmark_model "
        "'Inference timings in us' line, no onnxruntime_perf_test 'Average inference time cost' line)",
        path=path,
        fix="pass the result file of benchmark_litert_model --result_json, benchmark_model or onnxruntime_perf_test",
    )


def _where(device: str | None, tool: str) -> str:
    return device or f"a device (unnamed: pass --device-name; measured by {tool})"


def _litert_json(path: Path, text: str, device: str | None) -> DeviceResult:
    tool = LITERT_JSON
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, tool, f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("latency"), dict):
        raise _bad(path, tool, "key 'latency' is missing or not an object")
    if not isinstance(doc.get("model"), str) or not doc["model"]:
        raise _bad(path, tool, f"key 'model' is {doc.get('model')!r}, not the model's path")
    lat = doc["latency"]
    n = {k: _number(path, tool, lat, k, "latency.") for k in ("median_ms", "p95_ms", "max_ms", "avg_ms", "std_ms")}
    runs = int(_number(path, tool, lat, "num_runs", "latency.", integer=True))
    if runs < 1:
        raise _bad(path, tool, "key 'latency.num_runs' is 0: nothing was timed")
    init = _number(path, tool, lat, "init_ms", "latency.") if "init_ms" in lat else None
    size_mib = _number(path, tool, doc, "model_size_mb")
    accel = doc.get("fully_accelerated")
    if accel is not None and not isinstance(accel, bool):
        raise _bad(path, tool, f"key 'fully_accelerated' is {accel!r}, not true/false")
    names = doc.get("accelerators", [])
    if not isinstance(names, list) or not all(isinstance(a, str) for a in names):
        raise _bad(path, tool, f"key 'accelerators' is {names!r}, not a list of names")
    threads = int(_number(path, tool, doc, "num_threads", integer=True)) if "num_threads" in doc else None
    where = _where(device, tool)
    latency = Latency(
        n["median_ms"],
        n["p95_ms"],
        n["max_ms"],
        n["avg_ms"],
        n["std_ms"],
        runs,
        MEASURED,
        init,
        None,
        threads,
        host={"device": where, "result": str(path), "tool": tool},
        detail={
            "source": tool,
            "p50_from": "median",
            "p90_from": "p95",  # the tool reports no p90: its p95 is an upper bound of it
            "p99_from": "max",
            "fully_accelerated": accel,
            "accelerators": list(names),
            "warmup_first_ms": lat.get("warmup_first_ms"),
        },
    )
    return DeviceResult(
        tool=tool,
        source=str(path),
        model=doc["model"],
        model_bytes=round(size_mib * 2**20),
        device=where,
        latency=latency,
        size_tolerance_bytes=round(0.005 * 2**20) + 1,  # 2 decimals of MiB (round(model_size_mb, 2))
        fully_accelerated=accel,
        accelerators=tuple(names),
    )


def _benchmark_model(path: Path, text: str, device: str | None) -> DeviceResult:
    from .runners import parse_benchmark_model

    tool = BENCHMARK_MODEL
    try:
        lat = parse_benchmark_model(text)
    except ValueError as exc:
        raise _bad(path, tool, str(exc)) from None
    graph = re.search(r"Graph: \[([^\]\n]*)\]", text)
    size = re.search(rf"The input model file size \(MB\): ({_NUM})", text)
    model_bytes = tolerance = None
    if size:
        mb = float(size.group(1))
        model_bytes = round(mb * 1e6)
        # std::ostream's default precision: 6 significant digits of MB (1e6 bytes)
        tolerance = math.ceil(0.5 * 10 ** (math.floor(math.log10(mb)) - 5) * 1e6) + 1 if mb > 0 else 1
    where = _where(device, tool)
    latency = dataclasses.replace(lat, host={"device": where, "result": str(path), "tool": tool})
    return DeviceResult(
        tool=tool,
        source=str(path),
        model=graph.group(1) if graph else "",
        model_bytes=model_bytes,
        device=where,
        latency=latency,
        size_tolerance_bytes=tolerance or 0,
        op_profile=_op_summary(text),
    )


# "Summary by node type" rows of benchmark_model's op profiler (stats_calculator.cc, tab-separated):
# node type, count, avg_ms, avg %, cdf %, mem KB, times called
_NODE_TYPE_ROW = re.compile(rf"^\s*(\w[\w ]*?)\s+\d+\s+({_NUM})\s+({_NUM})%\s+{_NUM}%", re.M)


def _op_summary(text: str) -> tuple[tuple[str, float, float], ...]:
    at = text.find("Summary by node type")
    if at < 0:
        return ()
    block = text[at:].split("\n\n", 1)[0]
    rows = [(m.group(1).strip(), float(m.group(2)), float(m.group(3))) for m in _NODE_TYPE_ROW.finditer(block)]
    return tuple(r for r in rows if r[0] not in ("node type",))


def _perf_test(path: Path, text: str, device: str | None) -> DeviceResult:
    tool = PERF_TEST

    def grab(pattern: str, key: str, required: bool = True) -> float | None:
        m = re.search(pattern, text)
        if m is None:
            if required:
                raise _bad(path, tool, f"no '{key}' line")
            return None
        v = float(m.group(1))
        if not math.isfinite(v) or v < 0:
            raise _bad(path, tool, f"'{key}' is {m.group(1)}, not a non-negative number")
        return v

    avg = grab(rf"Average inference time cost: ({_NUM}) ms", "Average inference time cost")
    runs = grab(r"Total inference requests: (\d+)", "Total inference requests")
    init_s = grab(rf"Session creation time cost: ({_NUM}) s", "Session creation time cost", required=False)
    pct = {
        q: grab(rf"P{q} Latency(?::| is) ({_NUM}) (?:s|sec)\b", f"P{q} Latency", required=False)
        for q in ("50", "90", "99")
    }
    peak = grab(r"Peak working set size: (\d+) bytes", "Peak working set size", required=False)
    assert avg is not None and runs is not None
    if runs < 1:
        raise _bad(path, tool, "'Total inference requests' is 0: nothing was timed")
    ms = {q: v * 1e3 for q, v in pct.items() if v is not None}
    p90_from = "p90" if "90" in ms else "avg"
    if p90_from == "avg":
        log.warning("note: %s has no P90 line (this build printed no percentiles): its p90 is the mean", path)
    where = _where(device, tool)
    latency = Latency(
        round(ms.get("50", avg), 4),
        round(ms.get("90", avg), 4),
        round(ms.get("99", ms.get("90", avg)), 4),
        avg,
        0.0,
        int(runs),
        MEASURED,
        round(init_s * 1e3, 2) if init_s is not None else None,
        round(peak / 2**20, 2) if peak is not None else None,
        host={"device": where, "result": str(path), "tool": tool},
        detail={"source": tool, "p90_from": p90_from},
    )
    return DeviceResult(tool=tool, source=str(path), model="", model_bytes=None, device=where, latency=latency)


def require_same_model(result: DeviceResult, artifact: Path, size_bytes: int) -> None:
    """Refuse a result of another model: the file name it names, or its size beyond the tool's rounding.

    Raises:
        DataError: the name or the size differs (exit 2), naming both.
    """
    src = Path(result.source)
    if result.model:
        named = result.model.replace("\\", "/").rsplit("/", 1)[-1]
        if named != artifact.name:
            raise DataError(
                f"the {result.tool} result measured '{named}', not {artifact.name}",
                path=src,
                fix=f"measure {artifact.name} itself on the device (the file name must match), or pass its result",
            )
    if result.model_bytes is not None and abs(result.model_bytes - size_bytes) > result.size_tolerance_bytes:
        raise DataError(
            f"the {result.tool} result's model has {result.model_bytes:,} bytes (give or take "
            f"{result.size_tolerance_bytes:,}), {artifact.name} has {size_bytes:,}: another file of the same name",
            path=src,
            fix=f"measure this exact {artifact.name} on the device",
        )
    if not result.model and result.model_bytes is None:
        log.warning(
            "note: %s (%s) names no model file: that it measured %s cannot be checked", src, result.tool, artifact.name
        )


def read_for(paths, artifact: Path, size_bytes: int, device: str | None = None) -> list[DeviceResult]:
    """Every result in ``paths``, each checked to have measured ``artifact`` (:func:`require_same_model`)."""
    out = []
    for p in paths:
        r = read(p, device)
        require_same_model(r, Path(artifact), size_bytes)
        out.append(r)
    return out


def latency_of(results: list[DeviceResult]) -> tuple[Latency, tuple[float, ...]]:
    """The figure of one or several results of the same file: the one with the median p90, and every
    result's p90 as the repeats the gate's t-interval takes (one result: judged as reported)."""
    ranked = sorted(results, key=lambda r: r.latency.p90)
    mid = ranked[(len(ranked) - 1) // 2].latency
    repeats = tuple(r.latency.p90 for r in results) if len(results) > 1 else ()
    host = {**mid.host, "results": [r.source for r in results]} if len(results) > 1 else mid.host
    return dataclasses.replace(mid, host=host), repeats
