"""Feature-extraction cache: run each image through the frozen backbone once.

Each entry is one file's pooled feature vector for one view, stored under a key made of
everything that changes it (backbone, weights, input size, cut point, resize policy, view,
the file's content hash). A rerun reuses every entry; a changed image misses only its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _lazy, images, progress
from ..data import ImageFile


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

    def get(self, sha256: str, view: int) -> np.ndarray | None:
        p = self.path(sha256, view)
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # missing, or torn by a crash: recompute
            return None

    def put(self, sha256: str, view: int, vec: np.ndarray) -> None:
        p = self.path(sha256, view)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, vec.astype(np.float32), allow_pickle=False)
        os.replace(tmp, p)


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
