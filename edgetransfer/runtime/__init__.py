"""The app side: run exported models with LiteRT, ONNX Runtime, OpenVINO or TFLM, no TensorFlow needed.

Importable with only ``pip install "edgetransfer[runtime]"``. Which runtimes exist and what each
can measure is the registry in :mod:`edgetransfer.runtime.spec`; the names below read it.

Examples:
    >>> from edgetransfer.runtime import Classifier
    >>> clf = Classifier("model_int8_iouint8.tflite")
    >>> clf.classify("bee.jpg", top=2)
    [('bees', 0.97), ('ants', 0.03)]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import images
from ..errors import RuntimeBackendError
from ..exporter import formats
from . import safe as _safe
from . import spec as _specs
from .base import InputSpec, Runtime, Session, read_metadata
from .litert import LiteRT
from .onnxrt import OnnxRuntime
from .openvino import OpenVINO

__all__ = [
    "RUNTIMES",
    "Classifier",
    "InputSpec",
    "LiteRT",
    "OnnxRuntime",
    "OpenVINO",
    "Runtime",
    "Session",
    "available_runtimes",
    "get_runtime",
    "load_session",
    "read_metadata",
    "runtime_for",
]


class _Runtimes(Mapping[str, tuple[Any, tuple[str, ...]]]):
    """Runtime name (as in a target profile's ``runtime:``) -> (class, the modules it needs), read
    from the registry (:mod:`edgetransfer.runtime.spec`); a class is imported when first asked for."""

    def __getitem__(self, name: str) -> tuple[Any, tuple[str, ...]]:
        if name not in _specs.names():
            raise KeyError(name)
        spec = _specs.get(name)
        return _specs._resolve(spec.factory), spec.modules

    def __iter__(self) -> Iterator[str]:
        return iter(_specs.names())

    def __len__(self) -> int:
        return len(_specs.names())


RUNTIMES: Mapping[str, tuple[Any, tuple[str, ...]]] = _Runtimes()


def get_runtime(name: str, provider: str = "cpu") -> Runtime:
    """The runtime called ``name`` (``litert``, ``onnxruntime``, ``openvino``, ``tflm``); ``provider``
    only for a runtime that takes execution providers (ONNX Runtime).

    Raises:
        ConfigError: an unknown name, or a provider the runtime does not take.
    """
    return _specs.get(name).runtime(provider)


def runtime_for(path: str | Path, provider: str = "cpu") -> Runtime:
    """The default runtime for ``path``: the first its format registers (LiteRT for .tflite,
    ONNX Runtime for .onnx; see ``edgetransfer.exporter.formats``)."""
    return get_runtime(formats.for_path(path).runtimes[0], provider)


def available_runtimes(path: str | Path) -> list[Runtime]:
    """Every installed runtime that can run ``path``, the default (:func:`runtime_for`) first.

    Raises:
        ConfigError: a file type no runtime takes.
    """
    names = [n for n in formats.for_path(path).runtimes if n in _specs.names() and _specs.get(n).installed()]
    return [get_runtime(n) for n in names]


def load_session(path: str | Path, threads: int | None = None, provider: str = "cpu") -> Session:
    """Load ``path`` in its default runtime."""
    return runtime_for(path, provider).load(path, threads)


def _metadata_size(path: Path, declared, actual: int) -> int:
    """The input size the metadata declares, refused when absurd or not what the graph takes."""
    if declared is None:
        return actual
    if not isinstance(declared, int) or not 1 <= declared <= 8192 or (actual > 0 and declared != actual):
        raise RuntimeBackendError(
            f"its metadata says input size {declared!r} but the model takes {actual}",
            path=path,
            fix="re-export the model with edgetransfer (the metadata is damaged)",
        )
    return declared


class Classifier:
    """An exported model with its labels and preprocessing, ready for an app."""

    def __init__(
        self, path: str | Path, *, threads: int | None = None, provider: str = "cpu", safe: bool | None = None
    ):
        """``safe``: probe the file in a child process first (:mod:`edgetransfer.runtime.safe`);
        ``None`` (default) does so unless these exact bytes passed a probe before (a manifest beside
        the file is no proof: it is as easy to forge); ``True`` always; ``False`` never (files you trust)."""
        self.path = Path(path)
        _safe.guard(self.path, safe)
        self.session = load_session(self.path, threads, provider)
        self.metadata = read_metadata(self.path)
        self.labels = list(self.metadata.get("labels") or [str(i) for i in range(10_000)])
        inp = self.metadata.get("input", {})
        self.size = _metadata_size(self.path, inp.get("size"), self.session.input_spec.size)
        self.policy = inp.get("resize_policy", "crop")

    def preprocess(self, image) -> np.ndarray:
        """A path, PIL image or HxWx3 array -> a ``[1, size, size, 3]`` float32 batch in [0, 255],
        decoded, oriented and resized exactly as in training (normalisation is in the model)."""
        if isinstance(image, (str, Path)):
            pil, _ = images.decode(image)
        elif isinstance(image, np.ndarray):
            pil = images.from_array(image)  # 16-bit arrays scale to 8 bits, not wrap around
        else:
            pil = images._to_rgb(image)
        return np.asarray(images.resize(pil, self.size, self.policy), dtype=np.float32)[None]

    def probabilities(self, image) -> np.ndarray:
        probs = self.session.run(self.preprocess(image))[0]
        if self.metadata.get("labels") and probs.shape[-1] != len(self.labels):
            raise RuntimeBackendError(
                f"the model outputs {probs.shape[-1]} scores but its metadata has {len(self.labels)} labels",
                path=self.path,
                fix="re-export the model with edgetransfer (the labels do not belong to this model)",
            )
        return probs

    def classify(self, image, top: int = 5) -> list[tuple[str, float]]:
        """The ``top`` labels with their scores, best first."""
        probs = self.probabilities(image)
        order = np.argsort(-probs)[:top]
        return [(self.labels[i], float(probs[i])) for i in order]
