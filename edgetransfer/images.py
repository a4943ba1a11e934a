"""Image decoding shared by training, calibration and the app-side runtime.

Only Pillow and NumPy are used here, so :mod:`edgetransfer.runtime` can preprocess exactly
as training did without TensorFlow installed.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
# Pillow's own default (~89 Mpx, a 9500 x 9500 photo). Larger files are refused, not
# decoded: a crafted PNG of a few KB can otherwise expand to many GB of RAM.
DEFAULT_MAX_PIXELS = 89_478_485
RESIZE_POLICIES = ("crop", "pad", "stretch")


def max_pixels() -> int:
    """The decompression-bomb limit, overridable with ``EDGETRANSFER_MAX_PIXELS``."""
    raw = os.environ.get("EDGETRANSFER_MAX_PIXELS")
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"EDGETRANSFER_MAX_PIXELS={raw!r} is not a whole number",
            fix="set it to a pixel count such as 200000000, or unset it",
        ) from None


@dataclass(frozen=True)
class DecodedInfo:
    """What decoding learnt about a file besides its pixels."""

    format: str
    mode: str
    width: int
    height: int
    exif_rotated: bool
    unique_colors: int


def _open_checked(path: Path) -> Image.Image:
    if path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path=path, fix="delete it or replace it with the real image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"cannot decode: {exc}", path=path, fix="re-save it as JPEG or PNG, or delete it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode, truncated or damaged ({exc})", path=path,
                        fix="re-export the image or delete it") from None
    if im.width * im.height > max_pixels():
        raise DataError(
            f"decompression bomb: {im.width}x{im.height} pixels exceeds the limit of {max_pixels()}",
            path=path,
            fix="downscale the image, or raise EDGETRANSFER_MAX_PIXELS if you trust the file",
        )
    return im


def decode(path: str | Path) -> tuple[Image.Image, DecodedInfo]:
    """Decode an image file to an RGB PIL image with EXIF orientation applied.

    Raises:
        DataError: the file is empty, truncated, not an image or a decompression bomb.
    """
    path = Path(path)
    im = _open_checked(path)
    fmt, mode = (im.format or "?"), im.mode
    try:
        im.load()
        orientation = im.getexif().get(0x0112, 1)
        upright = ImageOps.exif_transpose(im) if orientation not in (0, 1) else im
        rgb = _to_rgb(upright)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode, truncated or damaged ({exc})", path=path,
                        fix="re-export the image or delete it") from None
    colors = rgb.getcolors(maxcolors=4096)
    info = DecodedInfo(fmt, mode, im.width, im.height, orientation not in (0, 1), len(colors) if colors else 4097)
    return rgb, info


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        # Composite on white: black is what a naive convert() gives and it shifts the colour stats.
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


def resize(im: Image.Image, size: int, policy: str = "crop") -> Image.Image:
    """Fit an RGB image into ``size`` x ``size``.

    Args:
        im: an RGB image.
        size: the square side in pixels.
        policy: ``crop`` (shorter side to size, centre crop), ``pad`` (longer side to size,
            pad with black) or ``stretch`` (ignore the aspect ratio).
    """
    if policy == "stretch":
        return im.resize((size, size), Image.BILINEAR)
    if policy == "crop":
        return ImageOps.fit(im, (size, size), Image.BILINEAR)
    if policy == "pad":
        return ImageOps.pad(im, (size, size), Image.BILINEAR, color=(0, 0, 0))
    raise ConfigError(f"unknown resize policy {policy!r}", fix=f"use one of {', '.join(RESIZE_POLICIES)}")


def load_array(path: str | Path, size: int, policy: str = "crop") -> np.ndarray:
    """Decode, orient and resize a file into a ``(size, size, 3)`` uint8 array."""
    im, _ = decode(path)
    return np.asarray(resize(im, size, policy), dtype=np.uint8)
