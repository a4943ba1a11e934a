"""The Runtime protocol and the records every runtime shares."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, RuntimeBackendError
from ..exporter import formats

METADATA_NAME = "edgetransfer.json"
LABELS_NAME = "labels.txt"
# Labels for 100k classes at ~30 bytes each fit in 4 MB; more than that is not metadata.
MAX_METADATA_BYTES = 4 << 20


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
        """Load ``path``; raise RuntimeBackendError if the engine cannot. The host runtimes also take
        ``settings`` (their own keys, :attr:`~.spec.RuntimeSpec.tune_candidates`) as a third argument."""

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
    """Metadata appended to a .tflite as a zip (the TFLite Metadata associated-file layout).

    Returns ``{}`` when there is no such zip or no ``edgetransfer.json`` in it (a file exported
    by something else).

    Raises:
        RuntimeBackendError: the metadata is there but damaged (bad CRC, not JSON, not UTF-8).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if METADATA_NAME not in zf.namelist():
                return {}
            for name in (METADATA_NAME, LABELS_NAME):  # untrusted archive: never read a huge member whole
                if name in zf.namelist() and zf.getinfo(name).file_size > MAX_METADATA_BYTES:
                    raise _bad_metadata(
                        path, f"{name} is {zf.getinfo(name).file_size:,} bytes (limit {MAX_METADATA_BYTES:,})"
                    )
            meta = json.loads(zf.read(METADATA_NAME))
            if not isinstance(meta, dict):
                raise _bad_metadata(path, f"{METADATA_NAME} holds a {type(meta).__name__}, not an object")
            if LABELS_NAME in zf.namelist():
                meta.setdefault("labels", zf.read(LABELS_NAME).decode().splitlines())
            return meta
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc) or "Bad magic" in str(exc):  # zipfile.py messages for a damaged member
            raise _bad_metadata(path, exc) from None
        return {}
    except (ValueError, KeyError, OSError, EOFError, NotImplementedError, zlib.error) as exc:
        # ValueError covers json.JSONDecodeError and UnicodeDecodeError
        raise _bad_metadata(path, exc) from None


def _bad_metadata(path: Path, why: Exception | str) -> RuntimeBackendError:
    what = why if isinstance(why, str) else f"{type(why).__name__}: {str(why)[:200]}"
    return RuntimeBackendError(
        f"the edgetransfer metadata inside the model is damaged ({what})",
        path=path,
        fix="re-export the model; the file was altered",
    )


def read_metadata(path: str | Path) -> dict:
    """Labels, normalisation, input size and layout written by ``edgetransfer export``.

    The file's format (by suffix) names its reader (``FormatSpec.metadata_reader``).
    Returns ``{}`` for a model exported by something else.

    Raises:
        ConfigError: a file no format reads, or a packaging (TFLM C source) rather than a model file.
    """
    path = Path(path)
    spec = formats.for_path(path)
    if spec.packages:
        raise ConfigError(
            f"a {spec.name} file packages a {spec.packages} model; it has no metadata of its own",
            path=path,
            fix=f"read the {formats.get(spec.packages).suffix} file beside it",
        )
    return dict(spec.metadata_reader_fn()(path))


def require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RuntimeBackendError(
            "model file not found", path=path, fix="check the path (see the export manifest.json)"
        )
    return path


def require_finite(out: np.ndarray, path: str | Path) -> np.ndarray:
    """``out`` unchanged if every value is finite, else a RuntimeBackendError naming the model.

    Call it wherever a runtime's output is read: a NaN compares false with everything, so an
    argmax or an accuracy over NaN scores is silently wrong rather than failing.
    """
    out = np.asarray(out)
    if out.dtype.kind in "fc" and not np.isfinite(out).all():
        bad = int(out.size - np.isfinite(out).sum())
        raise RuntimeBackendError(
            f"the model output NaN/inf for this input ({bad} of {out.size} values)",
            path=path,
            fix="check the input is an RGB image in [0, 255]; if it is, re-export the model (an int8 file may "
            "need a better calibration set)",
        )
    return out


def require_input_shape(batch: np.ndarray, spec: InputSpec, path: str | Path) -> None:
    """Refuse a batch that is not ``[N, size, size, 3]`` NHWC for ``spec`` (dims of -1 match anything).

    Raises:
        ConfigError: naming the model, the expected and the received shapes.
    """
    shape = tuple(getattr(batch, "shape", ()))
    want = tuple(spec.shape)
    if spec.layout == "NCHW" and len(want) == 4:
        want = (want[0], want[2], want[3], want[1])
    ok = len(shape) == 4 and len(want) == 4 and all(w in (-1, None) or w == s for w, s in zip(want[1:], shape[1:]))
    if not ok or shape[0] < 1:
        raise ConfigError(
            f"the model takes NHWC batches of shape {('N', *want[1:])}, this batch has shape {shape}",
            path=path,
            fix=f"resize images to {spec.size}x{spec.size} RGB (Classifier.preprocess does) or use the model "
            "exported at this size",
        )
