"""The integer scheme of our int8 files, simulated on a Keras 3 model (fake quantization).

Both int8 writers (the TFLite converter and ONNX Runtime's QDQ quantizer, ``formats/``) quantize the same way:

- BatchNormalization after a Conv2D / DepthwiseConv2D / Dense is folded into it with its moving statistics
  (``w * gamma / sqrt(var + eps)``, bias ``beta - mean * gamma / sqrt(var + eps)``), then
- the folded weights are int8 per output channel, symmetric, narrow range ``[-127, 127]``, scale
  ``max|w| / 127`` (TFLite quantization spec, "per-axis int8 weights, zero point 0"; ONNX Runtime's
  ``QInt8`` symmetric weights), and
- every activation tensor that reaches memory is int8/uint8 per tensor, asymmetric, its range the min/max the
  calibration images produce; ReLU/ReLU6 after a conv or add is fused into it (one tensor, not two), Dropout
  is gone, a softmax output has the fixed scale 1/256.

:func:`quant_sim` returns a model over the *same* layer objects (so training it trains the run's model) in which
each conv/dense computes with fake-quantized folded weights and each activation tensor passes a fake-quant op
(``keras.quantizers.fake_quant_with_min_max_vars``: straight-through gradient inside the range). Activation
ranges are not learned: :func:`observe` sets them to the float model's min/max on calibration images, which is
what the writers measure when they write the file, so the model trains against the grid it will ship on.

:func:`folded_layers` is the same fold in numpy, for learned rounding and bias correction (``adaround.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import _lazy

WEIGHT_QMAX = 127  # symmetric narrow-range int8 weights (TFLite quantization spec; ORT QInt8 symmetric)
SOFTMAX_MAX = 255.0 / 256.0  # TFLite's fixed softmax output: scale 1/256, zero point -128 (uint8 256 levels)
_CONV = ("Conv2D", "DepthwiseConv2D", "Dense")
_FUSED_ACTIVATIONS = ("ReLU",)  # the converters fuse ReLU/ReLU6 into the producing conv / add
_PASS = (
    "Dropout",
    "InputLayer",
    "SpatialDropout2D",
    "GaussianNoise",
    "Functional",
    "Sequential",
)  # identity, or quantized inside


def _kind(layer) -> str:
    return type(layer).__name__


def _flat_layers(model) -> list:
    """Every layer of ``model``, nested Functional models expanded, in order."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out += _flat_layers(layer)
        else:
            out.append(layer)
    return out


def _producers(layer) -> list:
    """The layers whose outputs feed ``layer``'s first call (its own graph, node 0)."""
    if not layer._inbound_nodes:
        return []
    return [t._keras_history.operation for t in layer._inbound_nodes[0].input_tensors]


@dataclass(frozen=True)
class Graph:
    """What the converters fuse: conv -> folded BatchNormalization, and tensors a fused activation hides."""

    bn_of: dict  # conv layer -> the BatchNormalization folded into it
    folded: frozenset  # BatchNormalization layers folded into their conv
    hidden: frozenset  # layers whose output never reaches memory (a fused ReLU consumes it)
    layers: tuple

    def conv_layers(self) -> list:
        return [lay for lay in self.layers if _kind(lay) in _CONV]


def analyse(model) -> Graph:
    """The conv/BN pairs and fused activations of ``model`` (its first graph)."""
    layers = _flat_layers(model)
    consumers: dict[int, list] = {}
    for layer in layers:
        for p in _producers(layer):
            consumers.setdefault(id(p), []).append(layer)
    bn_of, hidden = {}, set()
    for layer in layers:
        after = consumers.get(id(layer), [])
        if _kind(layer) in _CONV and len(after) == 1 and _kind(after[0]) == "BatchNormalization":
            bn_of[layer] = after[0]
            hidden.add(id(layer))
    for layer in layers:
        after = consumers.get(id(layer), [])
        if len(after) == 1 and _kind(after[0]) in _FUSED_ACTIVATIONS and _kind(layer) != "InputLayer":
            hidden.add(id(layer))
    return Graph(bn_of, frozenset(id(b) for b in bn_of.values()), frozenset(hidden), tuple(layers))


def bn_scale_shift(bn) -> tuple[Any, Any]:
    """(scale, shift) of a BatchNormalization in inference mode, as tensors: ``y = x * scale + shift``."""
    ops = _lazy.keras().ops
    gamma = bn.gamma if bn.scale else 1.0
    beta = bn.beta if bn.center else 0.0
    scale = gamma * ops.rsqrt(bn.moving_variance + bn.epsilon)
    return scale, beta - bn.moving_mean * scale


def _fq_weights(w, axis_len: int):
    """Per-output-channel symmetric narrow-range fake quantization of a kernel whose last axis is the channel."""
    keras = _lazy.keras()
    ops = keras.ops
    flat = ops.reshape(w, (-1, axis_len))
    m = ops.stop_gradient(ops.maximum(ops.max(ops.abs(flat), axis=0), 1e-12))
    q = keras.quantizers.fake_quant_with_min_max_vars(flat, -m, m, num_bits=8, narrow_range=True, axis=-1)
    return ops.reshape(q, ops.shape(w))


class _State:
    """Switches read by the simulation layers in eager calls (:func:`observe`): trace-time constants inside
    ``fit``'s compiled step, which always runs quantized."""

    def __init__(self) -> None:
        self.observing = False
        self.hook: Any = None  # while observing: hook(conv_layer, float input) (``weights.py`` reads inputs)


def _layer_classes():
    keras = _lazy.keras()
    ops = keras.ops

    class FoldedConv(keras.layers.Layer):  # type: ignore[name-defined]  # keras is lazy
        """A conv/depthwise/dense with its BatchNormalization folded and its folded weights fake-quantized."""

        def __init__(self, conv, bn, state: _State, **kwargs):
            super().__init__(name=f"{conv.name}_qsim", **kwargs)
            self.conv, self.bn, self.state = conv, bn, state

        def folded(self):
            conv, kind = self.conv, _kind(self.conv)
            w = conv.kernel
            bias = conv.bias if conv.use_bias else 0.0
            if self.bn is None:
                return w, bias
            scale, shift = bn_scale_shift(self.bn)
            if kind == "DepthwiseConv2D":
                w_f = w * ops.reshape(scale, (w.shape[2], w.shape[3]))
            else:
                w_f = w * scale
            return w_f, bias * scale + shift

        def call(self, x):
            conv, kind = self.conv, _kind(self.conv)
            w, b = self.folded()
            if self.state.observing and self.state.hook is not None:
                self.state.hook(conv, x)
            if not self.state.observing:
                w = _fq_weights(w, int(np.prod(w.shape[2:])) if kind == "DepthwiseConv2D" else int(w.shape[-1]))
            if kind == "Dense":
                y = ops.matmul(x, w)
            elif kind == "DepthwiseConv2D":
                y = ops.depthwise_conv(x, w, conv.strides, conv.padding, conv.data_format, conv.dilation_rate)
            else:
                y = ops.conv(x, w, conv.strides, conv.padding, conv.data_format, conv.dilation_rate)
            return y + b

    class ActQuant(keras.layers.Layer):  # type: ignore[name-defined]  # keras is lazy
        """Per-tensor asymmetric fake quantization with a range set by :func:`observe` (not trained)."""

        def __init__(self, state: _State, fixed: tuple[float, float] | None = None, **kwargs):
            super().__init__(**kwargs)
            self.state, self.fixed = state, fixed
            self.lo = self.add_weight(shape=(), initializer="zeros", trainable=False, name="min")
            self.hi = self.add_weight(shape=(), initializer="ones", trainable=False, name="max")
            self.seen: list[float] = []  # observed [min, max] while observing

        def call(self, x):
            if self.state.observing:
                lo, hi = float(ops.min(x)), float(ops.max(x))
                self.seen = [min(lo, self.seen[0]), max(hi, self.seen[1])] if self.seen else [lo, hi]
                return x
            lo, hi = self.fixed if self.fixed is not None else (self.lo, self.hi)
            return keras.quantizers.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)

    return FoldedConv, ActQuant


@dataclass
class QuantSim:
    """A fake-quantized model over the run's own layers, and its activation quantizers."""

    model: Any
    activations: list
    state: _State
    graph: Graph


def quant_sim(model) -> QuantSim:
    """``model`` with the int8 files' scheme simulated (see the module doc); shares ``model``'s weights."""
    keras = _lazy.keras()
    FoldedConv, ActQuant = _layer_classes()
    g = analyse(model)
    state = _State()
    acts: list = []
    wrappers: dict[int, Any] = {}

    def quantize_output(layer, y):
        fq = ActQuant(state, name=f"{layer.name}_aq")
        acts.append(fq)
        return fq(y)

    def call(layer, *args, **kwargs):
        kind = _kind(layer)
        if id(layer) in g.folded:  # applied by its conv already
            y = args[0]
        elif kind in _CONV:
            if id(layer) not in wrappers:
                wrappers[id(layer)] = FoldedConv(layer, g.bn_of.get(layer), state)
            y = wrappers[id(layer)](args[0])
            act: Any = getattr(layer, "activation", None)
            name = getattr(act, "__name__", "linear")
            if name == "softmax":  # logits are a tensor of their own, then the fixed-scale softmax output
                y = quantize_output(layer, y)
                fq = ActQuant(state, fixed=(0.0, SOFTMAX_MAX), name=f"{layer.name}_softmax_aq")
                acts.append(fq)
                return fq(keras.ops.softmax(y, axis=-1))
            if name != "linear":
                y = act(y)
        else:
            y = layer(*args, **kwargs)
        if kind in _PASS or id(layer) in g.hidden or (kind in _CONV and layer in g.bn_of):
            return y
        return quantize_output(layer, y)

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call, recursive=True)
    return QuantSim(clone, acts, state, g)


def observe(sim: QuantSim, images, batch: int = 16, hook=None) -> None:
    """Set every activation range to the float model's min/max on ``images`` (as the writers calibrate);
    ``hook(conv_layer, x)`` sees each conv/dense's float input on the way."""
    sim.state.observing, sim.state.hook = True, hook
    try:
        for a in sim.activations:
            a.seen = []
        for i in range(0, len(images), batch):
            sim.model(images[i : i + batch], training=False)
    finally:
        sim.state.observing, sim.state.hook = False, None
    for a in sim.activations:
        if a.seen and a.fixed is None:
            lo, hi = min(a.seen[0], 0.0), max(a.seen[1], 0.0)  # the int8 range always holds 0
            a.lo.assign(lo)
            a.hi.assign(hi if hi > lo else lo + 1e-6)


@dataclass
class Folded:
    """One conv/dense in numpy, BatchNormalization folded: ``y = conv(x, w) + b``, channel on the last axis."""

    conv: Any
    bn: Any
    w: np.ndarray  # folded kernel, Keras layout (depthwise: kh, kw, cin, mult)
    b: np.ndarray
    scale: np.ndarray  # the BN scale folded into w (ones without BN), shaped like w's channel axes

    @property
    def kind(self) -> str:
        return _kind(self.conv)

    def write_back(self, w_folded: np.ndarray | None = None, b_folded: np.ndarray | None = None) -> None:
        """Set the layer's own weights so that the fold gives ``w_folded`` / ``b_folded``."""
        if w_folded is not None:
            safe = np.where(np.abs(self.scale) > 1e-12, self.scale, 1.0)
            w = (w_folded / safe).astype(np.float32)
            self.conv.kernel.assign(w)
        if b_folded is not None:
            delta = (b_folded - self.b).astype(np.float32)
            if self.bn is not None and self.bn.center:
                self.bn.beta.assign(np.asarray(self.bn.beta) + delta)
            elif self.conv.use_bias:
                safe = np.where(np.abs(self.scale) > 1e-12, self.scale, 1.0).reshape(-1)
                self.conv.bias.assign(np.asarray(self.conv.bias) + delta / safe)


def folded_layers(model) -> list[Folded]:
    """Every conv/dense of ``model`` with its BatchNormalization folded, in numpy."""
    g = analyse(model)
    out = []
    for conv in g.conv_layers():
        kind = _kind(conv)
        w = np.asarray(conv.kernel, np.float64)
        channels = int(np.prod(w.shape[2:])) if kind == "DepthwiseConv2D" else int(w.shape[-1])
        b = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros(channels)
        bn = g.bn_of.get(conv)
        scale: np.ndarray = np.ones(b.shape)
        if bn is not None:
            s, t = (np.asarray(v, np.float64) for v in bn_scale_shift(bn))
            b, scale = b * s + t, s
        if kind == "DepthwiseConv2D":
            scale = scale.reshape(w.shape[2], w.shape[3])
        out.append(Folded(conv, bn, w * scale, b, scale))
    return out


def weight_scales(w: np.ndarray, kind: str) -> np.ndarray:
    """Per-output-channel int8 scales of folded weights ``w`` (``max|w| / 127``), shaped to broadcast on ``w``."""
    ch = w.reshape(-1, int(np.prod(w.shape[2:]))) if kind == "DepthwiseConv2D" else w.reshape(-1, w.shape[-1])
    s = np.maximum(np.abs(ch).max(axis=0), 1e-12) / WEIGHT_QMAX
    return s.reshape(w.shape[2:]) if kind == "DepthwiseConv2D" else s
