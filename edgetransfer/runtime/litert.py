"""LiteRT (TFLite): ``ai_edge_litert``, else ``tflite_runtime``, else ``tf.lite``."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, RuntimeBackendError
from .base import InputSpec, quantize_input, require_file

_CANDIDATES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")


def interpreter_module():
    """The first interpreter module that imports (tflite_runtime 2.14 fails under NumPy 2)."""
    errors = []
    for name in _CANDIDATES:
        try:
            return importlib.import_module(name)
        except Exception as exc:  # ImportError, or a binary built against another NumPy
            errors.append(f"{name}: {exc}")
    raise MissingDependencyError("no TFLite interpreter could be imported (" + "; ".join(errors) + ")",
                                 fix='pip install "edgetransfer[runtime]"  (installs ai-edge-litert)')


class _Session:
    def __init__(self, interp):
        self.interp = interp
        inp = interp.get_input_details()[0]
        self._out = interp.get_output_details()[0]
        scale, zp = inp["quantization"]
        self._in = inp
        self.input_spec = InputSpec(tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]).name, "NHWC",
                                    float(scale) if scale else None, int(zp) if scale else None)
        self._batch = int(inp["shape"][0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != self._batch:
            self.interp.resize_tensor_input(self._in["index"], [batch.shape[0], *self._in["shape"][1:]])
            self.interp.allocate_tensors()
            self._batch = batch.shape[0]
        self.interp.set_tensor(self._in["index"], quantize_input(batch, self.input_spec))
        self.interp.invoke()
        out = self.interp.get_tensor(self._out["index"])
        scale, zp = self._out["quantization"]
        if scale:
            out = (out.astype(np.float32) - zp) * scale
        return out.astype(np.float32)


class LiteRT:
    """LiteRT interpreter runtime (CPU, XNNPACK by default)."""

    name = "litert"
    formats = ("tflite",)

    def version(self) -> str:
        mod = interpreter_module()
        root = importlib.import_module(mod.__name__.split(".")[0])
        return f"{root.__name__} {getattr(root, '__version__', '?')}"

    def load(self, path: str | Path, threads: int | None = None) -> _Session:
        path = require_file(path)
        mod = interpreter_module()
        try:
            interp = mod.Interpreter(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeBackendError(f"LiteRT could not load the model ({exc})", path=path,
                                      fix="re-export it; check it is a .tflite file") from None
        return _Session(interp)
