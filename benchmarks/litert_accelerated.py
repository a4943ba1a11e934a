"""Which ops keep LiteRT's CPU accelerator (XNNPACK) from taking an int8 .tflite whole (issue 36).

``python -m ai_edge_litert.tools.benchmark_litert_model --model model_int8_iouint8.tflite`` prints
``Fully accelerated: False`` for our int8 files. This script asks ``CompiledModel.is_fully_accelerated()`` for
every op of the file alone (a one-op model cut from it) and for the file without its uint8<->int8 I/O
QUANTIZE ops and without its SOFTMAX, and times each variant with the same tool (median of 300 runs, 1 thread).
No TensorFlow: the file is edited with ai_edge_litert's own flatbuffer tools.

    python benchmarks/litert_accelerated.py MODEL.tflite

Measured on digits Lite0 64 px (docs/tasks/export-integer.md): QUANTIZE (uint8 -> int8 and back) and SOFTMAX
(int8) are the ops the accelerator leaves to the built-in kernels; without all three the file is fully
accelerated; the median latency is the same to 0.01 ms.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils as fbu

NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


def fully_accelerated(model, path: Path) -> bool | None:
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator

    fbu.write_model(model, str(path))
    try:
        return CompiledModel.from_file(str(path), HardwareAccelerator.CPU).is_fully_accelerated()
    except RuntimeError:
        return None  # a cut the runtime cannot load (e.g. an ADD whose second input came from a cut op)


def cut(model, head: int, tail: int):
    """``model`` without its first ``head`` and last ``tail`` ops (inputs/outputs and signature moved along)."""
    m = copy.deepcopy(model)
    s = m.subgraphs[0]
    for _ in range(head):
        s.inputs = list(s.operators.pop(0).outputs)
    for _ in range(tail):
        s.outputs = list(s.operators.pop().inputs[:1])
    for sd in m.signatureDefs or []:
        sd.inputs[0].tensorIndex, sd.outputs[0].tensorIndex = s.inputs[0], s.outputs[0]
    return m


def single(model, i: int):
    m = copy.deepcopy(model)
    s = m.subgraphs[0]
    op = s.operators[i]
    const = {t for t in op.inputs if t >= 0 and m.buffers[s.tensors[t].buffer].data is not None
             and len(m.buffers[s.tensors[t].buffer].data)}  # fmt: skip
    s.operators, s.inputs, s.outputs = [op], [t for t in op.inputs if t >= 0 and t not in const], list(op.outputs)
    m.signatureDefs = []
    return m


def median_ms(path: Path, runs: int = 300) -> float | None:
    out = path.with_suffix(".json")
    cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", str(path),
           "--num_runs", str(runs), "--num_threads", "1", "--result_json", str(out)]  # fmt: skip
    subprocess.run(cmd, capture_output=True, check=False)
    return json.loads(out.read_text())["latency"]["median_ms"] if out.is_file() else None


def main() -> int:
    model = fbu.read_model(sys.argv[1])
    ops = model.subgraphs[0].operators
    with tempfile.TemporaryDirectory() as tmp:
        seen: dict[tuple[str, object], int] = {}
        for i, op in enumerate(ops):
            verdict = fully_accelerated(single(model, i), Path(tmp) / f"op{i}.tflite")
            key = (op_name(model, op), verdict)
            if key not in seen:
                seen[key] = i
                print(f"op {i:3d} {key[0]:20s} alone: fully accelerated {verdict}")
        for tag, head, tail in (("as exported", 0, 0), ("without the I/O QUANTIZE", 1, 1),
                                ("without the I/O QUANTIZE and SOFTMAX", 1, 2)):  # fmt: skip
            p = Path(tmp) / f"{head}_{tail}.tflite"
            m = cut(model, head, tail)
            print(f"{tag:40s} fully accelerated {fully_accelerated(m, p)}, median {median_ms(p)} ms (1 thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
