"""Quantization recipes and calibration data.

A recipe is a frozen record built by a named constructor (``QuantRecipe.int8(...)``);
which (format, precision) pairs exist is stated once here and refused up front otherwise.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as data_lib
from . import images
from .errors import ConfigError, DataError, UnsupportedError

FORMATS = ("tflite", "onnx")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
SUPPORTED = {
    "tflite": ("fp32", "fp16", "dynamic", "int8", "int16x8"),
    # ONNX Runtime has no 16-bit-activation integer kernels on CPU: int16x8 is TFLite only.
    "onnx": ("fp32", "fp16", "dynamic", "int8"),
}
IO_DTYPES = ("uint8", "int8", "float32")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantRecipe:
    """How one artifact is quantized.

    Attributes:
        precision: fp32, fp16 (float16 weights), dynamic (int8 weights, float activations),
            int8 (full integer, calibrated), int16x8 (int16 activations, int8 weights).
        io_dtype: TFLite int8 input/output type; ``uint8`` lets raw camera bytes in.
        per_channel: ONNX int8 weights per output channel (TFLite always is).
        method: ONNX int8 calibration: minmax, entropy or percentile.
        calibration_size: images used for calibration.
    """

    precision: str
    io_dtype: str = "float32"
    per_channel: bool = True
    method: str = "minmax"
    calibration_size: int = 200

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}", fix=f"use one of {', '.join(PRECISIONS)}")
        if self.io_dtype not in IO_DTYPES:
            raise ConfigError(f"--io {self.io_dtype!r}", fix=f"use one of {', '.join(IO_DTYPES)}")
        if self.io_dtype != "float32" and self.precision != "int8":
            raise UnsupportedError(f"--io {self.io_dtype} needs full-integer int8 (got {self.precision})",
                                   fix="drop --io, or export --precision int8")
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration method {self.method!r}", fix=f"use one of {', '.join(CALIBRATION_METHODS)}")
        if not 1 <= self.calibration_size <= 10_000:
            raise ConfigError(f"--calibration-size {self.calibration_size}", fix="use 100 to 500 images")

    @classmethod
    def fp32(cls) -> "QuantRecipe":
        return cls("fp32")

    @classmethod
    def fp16(cls) -> "QuantRecipe":
        return cls("fp16")

    @classmethod
    def dynamic(cls) -> "QuantRecipe":
        return cls("dynamic")

    @classmethod
    def int8(cls, io: str = "uint8", *, per_channel: bool = True, method: str = "minmax",
             calibration_size: int = 200) -> "QuantRecipe":
        return cls("int8", io, per_channel, method, calibration_size)

    @classmethod
    def int16x8(cls, calibration_size: int = 200) -> "QuantRecipe":
        return cls("int16x8", calibration_size=calibration_size)

    @classmethod
    def named(cls, precision: str, **kwargs) -> "QuantRecipe":
        """The preset for ``precision`` with options applied where they mean something."""
        if precision == "int8":
            return cls.int8(**{k: v for k, v in kwargs.items() if v is not None})
        if precision == "int16x8":
            return cls.int16x8(kwargs.get("calibration_size") or 200)
        return cls(precision)

    @property
    def needs_calibration(self) -> bool:
        return self.precision in ("int8", "int16x8")

    def check(self, fmt: str) -> None:
        """Refuse a (format, precision) pair the toolchain cannot produce."""
        if fmt not in SUPPORTED:
            raise ConfigError(f"unknown format {fmt!r}", fix=f"use one of {', '.join(FORMATS)} or all")
        if self.precision not in SUPPORTED[fmt]:
            raise UnsupportedError(f"{fmt} cannot do precision {self.precision}",
                                   fix=f"{fmt} supports {', '.join(SUPPORTED[fmt])}; int16x8 needs --format tflite")
        if fmt == "onnx" and self.io_dtype != "float32":
            raise UnsupportedError(f"--io {self.io_dtype} is TFLite only: ONNX int8 keeps float input and output (QDQ)",
                                   fix="drop --io for --format onnx")


@dataclass(frozen=True)
class Calibration:
    """Calibration images as the model takes them ([0, 255] RGB floats) and where they came from."""

    images: np.ndarray
    source: str
    files: tuple[str, ...]



def _balanced(files: list[data_lib.ImageFile], n: int, seed: int) -> list[data_lib.ImageFile]:
    """Round-robin over classes from seeded per-class shuffles: class-balanced up to ``n``."""
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for f in sorted(files, key=lambda f: str(f.path)):
        by_class.setdefault(f.label, []).append(f)
    for group in by_class.values():
        rng.shuffle(group)
    out, i = [], 0
    while len(out) < n and any(i < len(g) for g in by_class.values()):
        out += [g[i] for g in by_class.values() if i < len(g)][: n - len(out)]
        i += 1
    return out


def calibration_set(run_manifest: dict, source: str | Path, n: int, *, seed: int = 0) -> Calibration:
    """Calibration images for a trained run.

    Args:
        run_manifest: the run's manifest (input size, resize policy, data location).
        source: ``auto`` (a class-balanced sample of the run's training split) or a folder
            (flat, or with class sub-folders).
        n: how many images.
        seed: sampling seed.
    """
    size, policy = int(run_manifest["input_size"]), run_manifest.get("resize_policy", "crop")
    if str(source) == "auto":
        root = run_manifest["data"]["root"]
        cfg = run_manifest.get("config", {})
        if not Path(root).is_dir():
            raise DataError("the run's training data is gone, so --calibration auto cannot sample it", path=root,
                            fix="pass --calibration DIR with 100 to 500 representative images")
        ds = data_lib.load(root, val_split=cfg.get("val_split"), seed=cfg.get("seed", 0))
        picked = [f.path for f in _balanced(list(ds.split("train") or ds.files), n, seed)]
        label = f"auto: class-balanced sample of {root} train split (seed {seed})"
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise DataError("calibration folder not found", path=folder, fix="pass a folder of images, or --calibration auto")
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES)
        if not found:
            raise DataError("no images in the calibration folder", path=folder, fix="add 100 to 500 representative images")
        random.Random(seed).shuffle(found)
        picked, label = found[:n], f"folder: {folder}"
    arrays, used = [], []
    for p in picked:
        try:
            arrays.append(images.load_array(p, size, policy))
            used.append(str(p))
        except DataError:
            continue  # a bad file is skipped here; `data inspect` reports it
    if not arrays:
        raise DataError("no calibration image could be decoded", path=str(source), fix="run `edgetransfer data inspect` on it")
    return Calibration(np.stack(arrays).astype(np.float32), label, tuple(used))
