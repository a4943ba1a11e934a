"""Feature-extraction cache: run each image through the frozen backbone once.

Each entry is one file's pooled feature vector for one view, stored under a key made of
everything that changes it (backbone, weights, input size, cut point, resize policy, view,
the file's content hash). A rerun reuses every entry; a changed image misses only its own.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _lazy, images, progress
from ..data import ImageFile
from ..errors import ToolchainError


@dataclass(frozen=True)
class FeatureKey:
    """What a cached feature depends on, besides the file and the view."""

    backbone: str
    weights: str
    input_size: int
    cut_at: str
    policy: str

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


_DIGEST = 32  # bytes of SHA-256 in front of each entry's .npy payload


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int


class FeatureCache:
    """On-disk cache of per-image feature vectors under ``root/<key digest>/``."""

    def __init__(self, root: str | Path, key: FeatureKey):
        self.key = key
        self.dir = Path(root) / key.digest()

    def path(self, sha256: str, view: int) -> Path:
        return self.dir / sha256[:2] / f"{sha256}-v{view}.npy"

    def _checksum(self, sha256: str, view: int, payload: bytes) -> bytes:
        """SHA-256 of the entry's key, image hash, view and bytes: an entry that was altered, or
        copied under another image's name, no longer matches (the weights and memo caches verify too)."""
        head = f"{self.key.digest()}:{sha256}:{view}:".encode()
        return hashlib.sha256(head + payload).digest()

    def get(self, sha256: str, view: int) -> np.ndarray | None:
        """The cached vector, or ``None`` when missing, torn or failing its checksum (recomputed)."""
        p = self.path(sha256, view)
        try:
            raw = p.read_bytes()
        except OSError:
            return None
        digest, payload = raw[:_DIGEST], raw[_DIGEST:]
        if len(raw) <= _DIGEST or digest != self._checksum(sha256, view, payload):
            return None  # torn by a crash, edited, or an entry without a checksum: recompute
        try:
            vec = np.load(io.BytesIO(payload), allow_pickle=False)
        except (OSError, ValueError):
            return None
        return vec if vec.dtype == np.float32 and np.isfinite(vec).all() else None

    def put(self, sha256: str, view: int, vec: np.ndarray) -> None:
        p = self.path(sha256, view)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, np.asarray(vec, dtype=np.float32), allow_pickle=False)
        payload = buf.getvalue()
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(self._checksum(sha256, view, payload) + payload)
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno != errno.ENOSPC:
                raise
            raise ToolchainError(  # the cache's disk, not --out's: say which (issue 25)
                "no space left on the device while writing the feature cache",
                path=self.dir,
                fix="free some disk space there, or set EDGETRANSFER_CACHE to a folder on another disk",
            ) from None


def extract(
    extractor,
    files: Sequence[ImageFile],
    cache: FeatureCache,
    *,
    views: int = 1,
    augment=None,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, CacheStats]:
    """Features for ``files`` x ``views``, computing only what the cache lacks.

    Args:
        extractor: Keras model mapping [0, 255] images to pooled feature vectors.
        files: the images.
        cache: where vectors live.
        views: 1 = the clean image only; K > 1 adds K-1 augmented views per image.
        augment: Keras augmentation layer for views >= 1.
        batch_size: images per forward pass.

    Returns:
        ``(features [N*views, D], labels [N*views], stats)``.
    """
    size = cache.key.input_size
    todo = [(i, f, v) for v in range(views) for i, f in enumerate(files) if cache.get(f.sha256, v) is None]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    for batch in progress.iterate(batches, "batches of features extracted"):
        x = np.stack([images.load_array(f.path, size, cache.key.policy) for _, f, _ in batch]).astype(np.float32)
        for view in sorted({v for _, _, v in batch}):
            idx = [k for k, (_, _, v) in enumerate(batch) if v == view]
            xv = x[idx]
            if view > 0 and augment is not None:
                _lazy.keras().utils.set_random_seed(1000 + view)
                xv = np.asarray(augment(xv, training=True))
            vecs = np.asarray(extractor.predict(xv, verbose=0, batch_size=batch_size))
            for k, vec in zip(idx, vecs):
                cache.put(batch[k][1].sha256, view, vec)
    found = [cache.get(f.sha256, v) for v in range(views) for f in files]
    if any(v is None for v in found):  # every entry was put above; a vanished cache file is not silent
        raise RuntimeError(f"feature cache entries went missing under {cache}")
    feats = np.stack([v for v in found if v is not None])
    labels = np.array([f.label for _ in range(views) for f in files], dtype=np.int32)
    return feats, labels, CacheStats(hits=len(files) * views - len(todo), misses=len(todo))
