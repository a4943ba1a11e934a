"""Backbone registry: one module per family registers its specs on import.

>>> from edgetransfer import backbones
>>> spec = backbones.get("efficientnet_lite0")
>>> model = backbones.build(spec, weights="imagenet")
"""

from __future__ import annotations

from . import efficientnet, efficientnet_lite, mobilenet, nasnet  # noqa: F401,I001  (registration order = list order)
from .api import Profile, build, profile
from .spec import BackboneSpec, Preprocess, get, names, register
from .weights import Weights, cache_dir

__all__ = [
    "BackboneSpec",
    "Preprocess",
    "Profile",
    "Weights",
    "build",
    "cache_dir",
    "get",
    "names",
    "profile",
    "register",
]
