"""Lazy imports of heavy libraries with an install hint instead of a bare ImportError."""
from __future__ import annotations

import importlib
import os
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


def tf() -> ModuleType:
    """TensorFlow, imported on first use."""
    return require("tensorflow")


def keras() -> ModuleType:
    """Keras 3, imported on first use (after TensorFlow so the backend is settled)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return require("keras")
