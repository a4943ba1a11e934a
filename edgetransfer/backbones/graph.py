"""Facts read off a built Keras graph: MACs, parameters and block boundaries (cut points).

Counting from the graph, not from a table, keeps the numbers true for every width, input
size and cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

_ACTIVATIONS = ("ReLU", "Activation")


def _hw(shape) -> int:
    return int(shape[1]) * int(shape[2]) if len(shape) == 4 else 1


def layer_macs(layer) -> int:
    """Multiply-accumulates of one layer for one image (0 for layers without weights)."""
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
        return 0
    out = layer.output.shape
    cin = int(layer.input.shape[-1])
    if kind == "Dense":
        return cin * int(out[-1]) * (_hw(layer.input.shape) if len(layer.input.shape) == 4 else 1)
    kh, kw = layer.kernel_size
    if kind == "Conv2D":
        return _hw(out) * kh * kw * cin * int(out[-1]) // max(1, getattr(layer, "groups", 1))
    if kind == "DepthwiseConv2D":
        return _hw(out) * kh * kw * cin * layer.depth_multiplier
    # SeparableConv2D: depthwise then pointwise
    mid = cin * layer.depth_multiplier
    return _hw(out) * (kh * kw * mid + mid * int(out[-1]))


def count_macs(model) -> int:
    """Total MACs of ``model`` for one image."""
    return sum(layer_macs(layer) for layer in _flat_layers(model))


def _flat_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers and type(layer).__name__ in ("Functional", "Model", "Sequential"):
            yield from _flat_layers(layer)
        else:
            yield layer


@dataclass(frozen=True)
class CutPoint:
    """A named block boundary: the layer whose output ends it, and that output's stride."""

    name: str
    layer: str
    stride: int
    channels: int


def cut_points(model) -> list[CutPoint]:
    """Block boundaries of ``model``, shallow to deep: ``strideN`` and ``top``.

    ``strideN`` is the last residual ``Add`` whose output is N times smaller than the input
    (the last activation where the network has no residuals, as MobileNetV1); ``top`` is
    the model's output.
    """
    size = int(model.input.shape[1])
    adds: dict[int, Any] = {}
    acts: dict[int, Any] = {}
    for layer in _flat_layers(model):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1]:
            continue
        stride = 2 ** round(math.log2(size / int(shape[1])))  # 240/8 = 30 px is still stride 8
        if type(layer).__name__ == "Add":
            adds[stride] = layer
        elif type(layer).__name__ in _ACTIVATIONS:
            acts[stride] = layer
    found = adds or acts
    out = [CutPoint(f"stride{s}", found[s].name, s, int(found[s].output.shape[-1])) for s in sorted(found) if s >= 4]
    top = model.layers[-1]
    top_stride = 2 ** round(math.log2(size / int(model.output.shape[1]))) if len(model.output.shape) == 4 else 0
    return [
        *[c for c in out if c.layer != top.name],
        CutPoint("top", top.name, top_stride, int(model.output.shape[-1])),
    ]


def cut(model, point: str):
    """The prefix of ``model`` up to cut point ``point`` (``top`` returns ``model``).

    Raises:
        ConfigError: unknown cut point (the known ones are listed).
    """
    points = {c.name: c for c in cut_points(model)}
    if point not in points:
        raise ConfigError(f"unknown cut point {point!r} for {model.name}", fix=f"use one of {', '.join(points)}")
    if point == "top":
        return model
    from .. import _lazy

    keras = _lazy.keras()
    return keras.Model(model.input, model.get_layer(points[point].layer).output, name=f"{model.name}_{point}")
