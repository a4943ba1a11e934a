"""Lazy imports of heavy libraries with an install hint instead of a bare ImportError."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from types import ModuleType

from .errors import MissingDependencyError

_EXTRA_FOR = {
    "tensorflow": "full",
    "keras": "full",
    "tf2onnx": "full",
    "onnx": "full",
    "matplotlib": "full",
    "sklearn": "full",
    "onnxruntime": "runtime",
    "ai_edge_litert": "runtime",
    "openvino": "openvino",
}


def require(module: str, *, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    if module in ("tensorflow", "keras"):
        # TensorFlow's C++ logging floods stderr; users can still raise it themselves.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = extra or _EXTRA_FOR.get(top, "full")
        raise MissingDependencyError(
            f"the optional dependency '{top}' is not installed ({exc})",
            fix=f'pip install "edgetransfer[{extra}]"',
        ) from exc


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence C++ log lines printed while TensorFlow loads (oneDNN, CUDA probing).

    TensorFlow >= 2.20 logs through absl before TF_CPP_MIN_LOG_LEVEL is read, so the only
    way to keep stderr readable is to point fd 2 at /dev/null during the import. Python
    exceptions are unaffected; ``EDGETRANSFER_TF_LOGS=1`` keeps the lines.
    """
    if os.environ.get("EDGETRANSFER_TF_LOGS") or "tensorflow" in sys.modules:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tf() -> ModuleType:
    """TensorFlow, imported on first use."""
    with _quiet_native_stderr():
        mod = require("tensorflow")
        # Device discovery logs too (cuInit on machines without a GPU): trigger it here.
        mod.config.list_physical_devices()
    return mod


def keras() -> ModuleType:
    """Keras 3, imported on first use (after TensorFlow so the backend is settled)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        tf()
    return require("keras")
