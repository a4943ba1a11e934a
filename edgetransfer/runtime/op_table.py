"""The per-op table TFLite's benchmark_model prints (--enable_op_profiling=true), read into rows."""

from __future__ import annotations

import re

from ..errors import RuntimeBackendError
from ..records.profile import OpProfile
from .profile import _NODE_INDEX, GraphOp, join

# benchmark_model (tensorflow/lite/tools/benchmark) with --enable_op_profiling=true prints, after the
# timings, "Operator-wise Profiling Info for Regular Benchmark Runs:" and StatsCalculator tables
# (tensorflow/core/util/stats_calculator.cc): "Run Order", "Top by Computation Time", "Summary by node
# type"; every field is "\t" + right-aligned text, so tabs split a row (XNNPACK's node types hold spaces
# and commas: "Convolution (NHWC, QU8) IGEMM"). Older builds add a [start] column: the header says.
BENCHMARK_MODEL_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs"


_TABLE = re.compile(r"=+ (.+?) =+")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("\t") if c.strip()]


def _run_order(lines: list[str]) -> list[dict]:
    """The rows of the first "Run Order" table in ``lines`` as ``{column: text}``."""
    rows: list[dict] = []
    header: list[str] = []
    in_table = False
    for line in lines:
        text = line.split("INFO: ", 1)[-1] if "INFO: " in line else line
        m = _TABLE.search(text)
        if m:
            if in_table:
                break
            in_table = m.group(1).strip() == "Run Order"
            continue
        if not in_table:
            continue
        cells = _cells(text)
        if not cells:
            if rows:
                break
            continue
        if cells[0].startswith("[node type]"):
            header = [c.strip("[]") for c in cells]
        elif header and len(cells) >= len(header):
            # a node type with a tab in it never occurs; the name (last) may hold anything but a tab
            rows.append(dict(zip(header, cells[: len(header) - 1] + ["\t".join(cells[len(header) - 1 :])])))
    return rows


def parse_benchmark_model(output: str, model: str = "", threads: int | None = None, tflite_ops=None) -> OpProfile:
    """The per-op table of ``benchmark_model --enable_op_profiling=true`` output as an :class:`OpProfile`.

    ``tflite_ops`` (``graphops.tflite_ops(path)``, in node order) joins a builtin op's row to the graph by
    the node index ending its name (``[tensor]:12``); rows of XNNPACK's delegate (``Delegate/...:3``) are
    numbered by XNNPACK, not by the graph, and stay unjoined. Only the regular runs' table is read (the
    initialization table before it holds ModifyGraphWithDelegate and AllocateTensors).

    Raises:
        RuntimeBackendError: the output has no op-profiling section (the flag was not passed, or the
            binary was built without profiling).
    """
    lines = output.splitlines()
    at = next((i for i, ln in enumerate(lines) if BENCHMARK_MODEL_SECTION in ln), None)
    if at is None:
        raise RuntimeBackendError(
            f"benchmark_model printed no op profile (no {BENCHMARK_MODEL_SECTION!r} section)",
            path=model or None,
            fix="run it with --enable_op_profiling=true",
        )
    rows = _run_order(lines[at + 1 :])
    avg = re.search(r"Inference \(avg\): ([\d.]+)", output)
    count = re.search(r"count=(\d+) first=", output)
    raw = []
    graph: list[GraphOp] = []
    for r in rows:
        name, op_type = r.get("Name", "?"), r.get("node type", "?")
        ms = float(r.get("avg ms", "0") or 0)  # the node's mean time per run, all its calls together
        m = _NODE_INDEX.search(name)
        if tflite_ops is not None and m and not name.startswith("Delegate/") and int(m.group(1)) < len(tflite_ops):
            op = tflite_ops[int(m.group(1))]
            graph.append(GraphOp(name, op.type, op.kind, (), op.macs, op.weight_bytes, op.act_bytes))
        raw.append((name, op_type, "", ms))
    ops = join(raw, 1, graph, {})  # a device's peak is not this host's: rate nothing
    wall = float(avg.group(1)) / 1e3 if avg else sum(o.time_ms for o in ops)
    return OpProfile(
        str(model),
        "litert (benchmark_model)",
        threads,
        int(count.group(1)) if count else 0,
        sum(o.time_ms for o in ops),
        wall,
        ops,
        {},
        "benchmark_model --enable_op_profiling=true",
    )
