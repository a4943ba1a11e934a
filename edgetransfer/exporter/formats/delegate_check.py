"""Delegate compatibility answered by the vendors' own tools instead of our op lists.

- ONNX, ``nnapi`` / ``coreml`` / ``coreml-mlprogram``: ONNX Runtime's mobile usability checker
  (``onnxruntime/tools/mobile_helpers/usability_checker.py``, the code behind
  ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``): the model is optimised at the BASIC
  level and shape-inferred as that tool does, then ``check_nnapi_partitions`` / ``check_coreml_partitions``
  count supported nodes and partitions from the EP's supported-op tables shipped with ONNX Runtime.
- TFLite, ``gpu``: ``tf.lite.experimental.Analyzer.analyze(model_content=..., gpu_compatibility=True)``, which
  runs ``tflite::CheckGpuDelegateCompatibility`` (``tensorflow/lite/tools/versioning/gpu_compatibility.cc``)
  per op. It only prints a report (its docstring: the format may change), so the lines
  ``Op#<n> <TYPE>(`` and ``Subgraph#0 has GPU delegate compatibility issues at nodes <a, b>``
  (``tensorflow/lite/python/analyzer_wrapper/model_analyzer.cc``) are parsed; an unparsable report raises.

Both tools answer "may run", not "will run fast": caveats (e.g. constant Conv weights) are not checked.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ... import _lazy
from ...errors import ToolchainError, UnsupportedError

ONNX_DELEGATES = {
    "nnapi": None,
    "coreml": "coreml_supported_neuralnetwork_ops.md",
    "coreml-mlprogram": "coreml_supported_mlprogram_ops.md",
}
TFLITE_DELEGATES = ("gpu",)


@dataclass(frozen=True)
class DelegateReport:
    """What a vendor tool says about running a model on one delegate / execution provider."""

    delegate: str
    tool: str
    nodes_total: int
    nodes_supported: int
    partitions: int
    unsupported_ops: tuple[str, ...] = ()
    verdict: str = ""  # the tool's own word where it has one: YES / MAYBE / NO (ONNX Runtime)

    @property
    def share(self) -> float:
        return self.nodes_supported / self.nodes_total if self.nodes_total else 1.0

    @property
    def full(self) -> bool:
        return self.nodes_total > 0 and self.nodes_supported == self.nodes_total and self.partitions == 1


def check_delegate(path: str | Path, delegate: str) -> DelegateReport:
    """Ask the vendor tool whether ``path`` runs on ``delegate``.

    Args:
        path: an exported ``.onnx`` or ``.tflite`` file.
        delegate: ``nnapi``, ``coreml`` or ``coreml-mlprogram`` for ONNX; ``gpu`` for TFLite.

    Raises:
        UnsupportedError: no tool answers this (format, delegate) pair (fall back to the op lists).
        MissingDependencyError: onnxruntime / tensorflow is not installed.
        ToolchainError: the tool ran but its answer could not be read.
    """
    path = Path(path)
    if path.suffix == ".onnx" and delegate in ONNX_DELEGATES:
        return _onnx(path, delegate)
    if path.suffix == ".tflite" and delegate in TFLITE_DELEGATES:
        return _tflite_gpu(path)
    raise UnsupportedError(
        f"no vendor tool checks {path.suffix} files for delegate {delegate!r}",
        path=path,
        fix=f"use {sorted(ONNX_DELEGATES)} for .onnx or {list(TFLITE_DELEGATES)} for .tflite",
    )


def _onnx(path: Path, delegate: str) -> DelegateReport:
    ort = _lazy.require("onnxruntime", extra="runtime")
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory(prefix="et-usability-") as tmp:
        optimized = Path(tmp) / path.name  # as the CLI does: ORT_ENABLE_BASIC first (constant folding etc.)
        optimize_model(path, optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        table = ONNX_DELEGATES[delegate]
        info = (
            uc.check_nnapi_partitions(model, True) if table is None else uc.check_coreml_partitions(model, True, table)
        )
    return DelegateReport(
        delegate,
        f"onnxruntime {ort.__version__} mobile_helpers.usability_checker",
        info.num_nodes,
        info.num_supported_nodes,
        info.num_partitions,
        tuple(sorted(info.unsupported_ops)),
        info.suitability().name,
    )


_OP = re.compile(r"^\s*Op#(\d+) (\w+)\(")
_ISSUES = re.compile(r"Subgraph#0 has GPU delegate compatibility issues at nodes ([\d, ]+)")


def _tflite_gpu(path: Path) -> DelegateReport:
    tf = _lazy.tf()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_content=path.read_bytes(), gpu_compatibility=True)
    text = out.getvalue()
    sub0 = text.split("Tensors of Subgraph#0")[0]  # op lines of the main subgraph come first
    ops = [m.group(2) for m in map(_OP.match, sub0.splitlines()) if m]
    if not ops or ("compatib" not in text):
        raise ToolchainError(
            "could not read tf.lite.experimental.Analyzer's report (its format changed?)",
            path=path,
            fix="fall back to the target profile's op list (edgetransfer.evaluation.compat.check)",
        )
    m = _ISSUES.search(text)
    bad = {int(n) for n in m.group(1).replace(" ", "").split(",") if n} if m else set()
    ok = [i not in bad for i in range(len(ops))]
    partitions = sum(1 for i, v in enumerate(ok) if v and (i == 0 or not ok[i - 1]))  # runs in graph order
    return DelegateReport(
        "gpu",
        f"tensorflow {tf.__version__} lite.experimental.Analyzer",
        len(ops),
        sum(ok),
        partitions,
        tuple(sorted({ops[i] for i in bad})),
        "NO" if bad else "YES",
    )
