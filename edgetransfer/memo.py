"""Content-addressed results a sweep reuses across output folders: converted files and predictions.

A conversion is a pure function of its inputs (the model's graph and weights, the recipe, the
calibration images, the metadata, the converter's version) and so are a file's predictions on a
set of images (the file's bytes, the images, the runtime). Each result is stored under the sha256
of those inputs, as TensorRT's engine cache and ccache do, so a second sweep that trains the same
heads (the features workflow is seeded, its heads come out bit for bit the same) converts and
evaluates nothing again. Latency is never stored here: it is measured every time.

Entries are written atomically and carry their own sha256, checked on every read: a torn or
edited entry is dropped and recomputed, never used. Arrays are ``.npy`` read with
``allow_pickle=False`` (data, never code).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import EdgeTransferError
from .io import atomic_path


def digest(*parts) -> str:
    """sha256 of ``parts``: bytes and arrays by content, everything else as sorted JSON."""
    h = hashlib.sha256(__version__.encode())
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes | bytearray):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def model_digest(model) -> str:
    """The Keras model's graph and every weight, by content (not the .keras file, whose zip has dates)."""
    return digest(model.to_json(), *[np.asarray(w) for w in model.get_weights()])


def source_digest(*modules) -> str:
    """The code that writes a result, by content: a development install that edits a converter
    between two sweeps gets new entries, not files from the old code (the version alone would not)."""
    files = []
    for m in modules:
        path = Path(getattr(m, "__file__", "") or "")
        files += sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    return digest(*[f.read_bytes() for f in files if f.is_file()])


class Memo:
    """Entries under ``root/<kind>/<key[:2]>/<key>``; ``None`` from a getter means "compute it"."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def get_bytes(self, kind: str, key: str) -> bytes | None:
        path = self._path(kind, key)
        try:
            blob = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        body, tail = blob[:-64], blob[-64:]
        if hashlib.sha256(body).hexdigest().encode() != tail:
            path.unlink(missing_ok=True)  # torn or edited: recompute rather than trust it
            self.misses += 1
            return None
        self.hits += 1
        return body

    def put_bytes(self, kind: str, key: str, data: bytes) -> None:
        path = self._path(kind, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data + hashlib.sha256(data).hexdigest().encode())
        except (OSError, EdgeTransferError):
            pass  # a cache that cannot be written (disk full, read-only) only costs time

    def get_array(self, kind: str, key: str) -> np.ndarray | None:
        blob = self.get_bytes(kind, key)
        if blob is None:
            return None
        try:
            return np.load(io.BytesIO(blob), allow_pickle=False)
        except ValueError:
            return None

    def put_array(self, kind: str, key: str, arr: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(arr), allow_pickle=False)
        self.put_bytes(kind, key, buf.getvalue())


def for_sweep() -> Memo | None:
    """The memo under the cache folder (``$EDGETRANSFER_CACHE``), or ``None`` where
    ``EDGETRANSFER_MEMO=0`` (e.g. to time a sweep that reuses features only)."""
    if os.environ.get("EDGETRANSFER_MEMO", "1") == "0":
        return None
    from .backbones import cache_dir

    return Memo(cache_dir() / "memo")
