"""Building backbones and reading their profile (params, MACs, feature size, cut points)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import _lazy, images
from .._version import __version__
from . import graph
from .spec import BackboneSpec, get
from .weights import Weights, cache_dir


def _spec(spec: BackboneSpec | str) -> BackboneSpec:
    return get(spec) if isinstance(spec, str) else spec


def build(
    spec: BackboneSpec | str,
    *,
    weights: Weights | str | Path | None = "imagenet",
    input_size: int | None = None,
    include_top: bool = False,
    cut_at: str = "top",
):
    """Build a backbone as a Keras model taking RGB pixels in [0, 255].

    Args:
        spec: a spec or registered name.
        weights: ``imagenet``, ``none`` or a ``.weights.h5`` / ``.h5`` path.
        input_size: square input side (default: the spec's).
        include_top: keep the 1000-class ImageNet classifier.
        cut_at: a cut point (``stride8``, ``stride16``, ``stride32`` or ``top``); ignored
            with ``include_top``.

    Raises:
        ConfigError: bad size or cut point. WeightsError: weights missing or not fitting.
    """
    spec = _spec(spec)
    size = spec.check_size(input_size or spec.input_size)
    model = spec.builder(size, Weights.parse(weights), include_top)
    return model if include_top else graph.cut(model, cut_at)


@dataclass(frozen=True)
class Profile:
    """What the graph of a backbone says at its default input size."""

    name: str
    input_size: int
    params: int
    macs: int
    feature_dim: int
    cut_points: tuple[dict, ...]


def _keras_version() -> str:
    """Keras' version from the installed package's metadata: no 10-20 s TensorFlow import for a
    listing (issue #26: a warm ``backbones list`` spent its time importing Keras for this string)."""
    from importlib import metadata

    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return str(_lazy.keras().__version__)


def _shipped(spec: BackboneSpec, keras_version: str) -> Profile | None:
    """The profile counted when the package was made (:mod:`._profiles`), for the same Keras
    major version and default size; None for a backbone registered since (it is counted)."""
    from ._profiles import KERAS, PROFILES

    row = PROFILES.get(spec.name)
    if row is None or row["input_size"] != spec.input_size or keras_version.split(".")[0] != KERAS.split(".")[0]:
        return None
    return Profile(spec.name, **{**row, "cut_points": tuple(row["cut_points"])})


def profile(spec: BackboneSpec | str) -> Profile:
    """Params and MACs (with the ImageNet classifier, as published) at the default size.

    Counted on the built graph and cached on disk per edgetransfer and Keras version.
    """
    spec = _spec(spec)
    version = _keras_version()
    shipped = _shipped(spec, version)
    if shipped is not None:
        return shipped
    path = cache_dir() / "profiles" / f"{spec.name}-{__version__}-keras{version}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return Profile(**{**data, "cut_points": tuple(data["cut_points"])})
    keras = _lazy.keras()
    full = spec.builder(spec.input_size, Weights("none"), True)
    base = spec.builder(spec.input_size, Weights("none"), False)
    prof = Profile(
        spec.name,
        spec.input_size,
        int(full.count_params()),
        graph.count_macs(full),
        int(base.output.shape[-1]),
        tuple(asdict(c) for c in graph.cut_points(base)),
    )
    keras.backend.clear_session()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(prof)))
    os.replace(tmp, path)
    return prof


def predict(
    spec: BackboneSpec | str,
    paths: list[str | Path],
    *,
    top: int = 5,
    weights: Weights | str | Path | None = "imagenet",
) -> list[dict]:
    """ImageNet top-K of each image with the backbone's own 1000-class head.

    Returns:
        ``[{"image": path, "top": [{"index", "label", "score"}, ...]}, ...]``
    """
    from . import imagenet

    spec = _spec(spec)
    model = build(spec, weights=weights, include_top=True)
    batch = np.stack([images.load_array(p, spec.input_size, "crop") for p in paths]).astype(np.float32)
    probs = np.asarray(model.predict(batch, verbose=0))
    return [{"image": str(p), "top": imagenet.top_k(row, top)} for p, row in zip(paths, probs)]
