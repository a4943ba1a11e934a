"""Preprocessing of an outside model: the presets, the ``--preprocess`` spec, and what a file's metadata says."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """What the user's code did to RGB [0, 255] pixels before the model: reorder the channels
    (``bgr``), then ``x * scale + offset`` per channel (in the order the model sees them).

    The presets are ``keras.applications.imagenet_utils.preprocess_input``'s modes
    (keras/src/applications/imagenet_utils.py, ``_preprocess_numpy_input``).
    """

    name: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    bgr: bool = False
    note: str = ""

    @classmethod
    def from_mean_std(cls, name: str, mean, std, bgr: bool = False, note: str = "") -> Preprocessing:
        mean, std = _three(mean, "mean"), _three(std, "std")
        if min(std) <= 0:
            raise ConfigError(f"--preprocess {name}: std {std} must be positive", fix="give positive std values")
        return cls(name, tuple(1.0 / s for s in std), tuple(-m / s for m, s in zip(mean, std)), bgr, note)

    @property
    def identity(self) -> bool:
        return not self.bgr and self.scale == (1.0,) * 3 and self.offset == (0.0,) * 3

    @property
    def mean(self) -> list[float]:
        return [-o / s for o, s in zip(self.offset, self.scale)]

    @property
    def std(self) -> list[float]:
        return [1.0 / s for s in self.scale]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The same arithmetic in NumPy (for foreign files fed outside the graph, and for tests)."""
        x = np.asarray(x, dtype=np.float32)
        if self.bgr:
            x = x[..., ::-1]
        return x * np.asarray(self.scale, np.float32) + np.asarray(self.offset, np.float32)

    def to_json(self) -> dict:
        """The run manifest's ``preprocess``: mean/std on [0, 255] like our backbones' records, plus the preset."""
        return {
            "mean": self.mean,
            "std": self.std,
            "input_range": [0, 255],
            "channel_order": "BGR" if self.bgr else "RGB",
            "preset": self.name,
            "note": self.note,
        }


def _three(values, what: str) -> tuple[float, float, float]:
    vals = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3:
        raise ConfigError(
            f"--preprocess: {what} has {len(vals)} values (received: {values!r})",
            fix=f"give one {what} or three (one per RGB channel)",
        )
    return (vals[0], vals[1], vals[2])


_MODE_SRC = "keras.applications preprocess_input mode"


PRESETS: dict[str, Preprocessing] = {
    "tf": Preprocessing(
        "tf",
        (1 / 127.5,) * 3,
        (-1.0,) * 3,
        note=f"x / 127.5 - 1 ({_MODE_SRC} 'tf': MobileNet, MobileNetV2, Xception, Inception, NASNet)",
    ),
    "torch": Preprocessing.from_mean_std(
        "torch",
        (123.675, 116.28, 103.53),  # ImageNet mean (0.485, 0.456, 0.406) * 255
        (58.395, 57.12, 57.375),  # ImageNet std (0.229, 0.224, 0.225) * 255
        note=f"x / 255, minus the ImageNet mean, over its std ({_MODE_SRC} 'torch': DenseNet)",
    ),
    "caffe": Preprocessing(
        "caffe",
        (1.0,) * 3,
        (-103.939, -116.779, -123.68),  # BGR ImageNet mean, imagenet_utils.py
        bgr=True,
        note=f"RGB to BGR, minus the ImageNet BGR mean ({_MODE_SRC} 'caffe': ResNet50, VGG16/19)",
    ),
    "efficientnet": Preprocessing(
        "efficientnet",
        (1.0,) * 3,
        (0.0,) * 3,
        note="pixels in [0, 255] go in as they are; the model normalises them itself "
        "(keras.applications EfficientNet/V2, ConvNeXt, MobileNetV3)",
    ),
    "none": Preprocessing("none", (1.0,) * 3, (0.0,) * 3, note="no preprocessing: the model takes RGB [0, 255]"),
}


_SPEC_KEYS = ("scale", "offset", "mean", "std", "order")


_SPEC_HELP = (
    f"a preset ({', '.join(PRESETS)}) or an explicit spec such as 'scale=1/127.5,offset=-1' or "
    "'mean=123.675,116.28,103.53,std=58.395,57.12,57.375' (add 'order=bgr' if your code fed BGR)"
)


def _number(text: str) -> float:
    text = text.strip()
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--preprocess: {text!r} is not a number", fix=f"use {_SPEC_HELP}") from None


def parse_preprocess(text: str | Preprocessing) -> Preprocessing:
    """A preset name or an explicit ``key=values`` spec (keys: scale, offset, mean, std, order).

    Raises:
        ConfigError: unknown preset or key, wrong number of values, scale/offset mixed with mean/std.
    """
    if isinstance(text, Preprocessing):
        return text
    name = text.strip()
    if name.lower() in PRESETS:
        return PRESETS[name.lower()]
    if "=" not in name:
        raise ConfigError(f"unknown --preprocess {text!r}", fix=f"use {_SPEC_HELP}")
    parts = re.split(r"[,;\s]\s*(?=[A-Za-z_]+\s*=)", name)
    spec: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key not in _SPEC_KEYS:
            raise ConfigError(f"--preprocess: unknown key {key!r} in {text!r}", fix=f"use {_SPEC_HELP}")
        spec[key] = value
    order = spec.pop("order", "rgb").strip().lower()
    if order not in ("rgb", "bgr"):
        raise ConfigError(f"--preprocess: order={order!r}", fix="use order=rgb or order=bgr")
    nums = {k: [_number(v) for v in re.split(r"[,;\s]+", s.strip()) if v] for k, s in spec.items()}
    if nums.keys() & {"scale", "offset"} and nums.keys() & {"mean", "std"}:
        raise ConfigError(f"--preprocess {text!r} mixes scale/offset with mean/std", fix="give one pair or the other")
    if "mean" in nums or "std" in nums:
        return Preprocessing.from_mean_std(name, nums.get("mean", [0.0]), nums.get("std", [1.0]), order == "bgr")
    scale, offset = _three(nums.get("scale", [1.0]), "scale"), _three(nums.get("offset", [0.0]), "offset")
    if 0.0 in scale:
        raise ConfigError(f"--preprocess {text!r}: a scale of 0 erases the image", fix="give a non-zero scale")
    return Preprocessing(name, scale, offset, order == "bgr")
