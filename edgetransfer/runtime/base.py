"""The Runtime protocol and the records every runtime shares."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, RuntimeBackendError

METADATA_NAME = "edgetransfer.json"
LABELS_NAME = "labels.txt"


@dataclass(frozen=True)
class InputSpec:
    """What a loaded model takes: NHWC or NCHW, its dtype and quantization (if any)."""

    shape: tuple
    dtype: str
    layout: str = "NHWC"
    scale: float | None = None
    zero_point: int | None = None

    @property
    def size(self) -> int:
        return int(self.shape[1] if self.layout == "NHWC" else self.shape[2])


@runtime_checkable
class Session(Protocol):
    """A loaded model, ready to run batches of [0, 255] RGB NHWC float32 images."""

    input_spec: InputSpec

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, classes]`` as float32."""


@runtime_checkable
class Runtime(Protocol):
    """An inference engine: LiteRT, ONNX Runtime, Keras, or a plugin."""

    name: str
    formats: tuple[str, ...]

    def load(self, path: str | Path, threads: int | None = None) -> Session:
        """Load ``path``; raise RuntimeBackendError if the engine cannot."""

    def version(self) -> str:
        """The engine's version string."""


def quantize_input(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """[0, 255] floats -> what the model's input tensor takes (quantized if it is)."""
    if spec.dtype in ("float32", "float16"):
        return batch.astype(spec.dtype)
    info = np.iinfo(spec.dtype)
    q = np.round(batch / (spec.scale or 1.0) + (spec.zero_point or 0))
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def to_nchw(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if spec.layout == "NCHW" else batch


def read_tflite_metadata(path: Path) -> dict:
    """Metadata appended to a .tflite as a zip (the TFLite Metadata associated-file layout)."""
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read(METADATA_NAME))
            if LABELS_NAME in zf.namelist():
                meta.setdefault("labels", zf.read(LABELS_NAME).decode().splitlines())
            return meta
    except (zipfile.BadZipFile, KeyError):
        return {}


def read_metadata(path: str | Path) -> dict:
    """Labels, normalisation, input size and layout written by ``edgetransfer export``.

    Returns ``{}`` for a model exported by something else.
    """
    path = Path(path)
    if path.suffix == ".tflite":
        return read_tflite_metadata(path)
    if path.suffix == ".onnx":
        from .onnxrt import onnx_metadata

        return onnx_metadata(path)
    raise ConfigError(f"unknown model type {path.suffix!r}", path=path, fix="use a .tflite or .onnx file")


def require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RuntimeBackendError("model file not found", path=path, fix="check the path (see the export manifest.json)")
    return path
