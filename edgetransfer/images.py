"""Image decoding shared by training, calibration and the app-side runtime.

Only Pillow and NumPy are used here, so :mod:`edgetransfer.runtime` can preprocess exactly
as training did without TensorFlow installed.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
# The only Pillow decoders a file may reach: other plugins (FITS, PSD, ...) see far less
# hostile input and are not opened at all. MPO is a camera JPEG with extra frames; Pillow's
# JPEG plugin returns it (PIL/JpegImagePlugin.py, jpeg_factory).
PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
ALLOWED_FORMATS = frozenset(PILLOW_FORMATS) | {"MPO"}
SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP"}
# Magic numbers of formats people put in image folders by mistake (from each format's spec).
_SIGNATURES = (
    (b"SIMPLE  =", "FITS"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x7fELF", "ELF executable"),
    (b"8BPS", "PSD"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)
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
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(
            f"EDGETRANSFER_MAX_PIXELS={raw!r} is not a positive whole number",
            fix="set it to a pixel count such as 200000000, or unset it",
        )
    return value


def sniff(path: Path) -> str:
    """What a file that is not an allowed image looks like: a known format's name, else its first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return "unreadable"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return f"{name} data"
    if head[4:8] == b"ftyp":
        return f"ISO media ({head[8:12].decode('ascii', 'replace')}, e.g. HEIC or MP4)"
    return f"starts with {head[:12]!r}"


@dataclass(frozen=True)
class DecodedInfo:
    """What decoding learnt about a file besides its pixels."""

    format: str
    mode: str
    width: int
    height: int
    exif_rotated: bool
    unique_colors: int


def _bomb(path: Path, what: str, limit: int) -> DataError:
    return DataError(
        f"decompression bomb: {what} exceeds the limit of {limit} pixels",
        path=path,
        fix="downscale the image, or raise EDGETRANSFER_MAX_PIXELS if you trust the file",
    )


def _open_checked(path: Path) -> Image.Image:
    if path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path=path, fix="delete it or replace it with the real image")
    limit = max_pixels()
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that (PIL/Image.py,
    # _decompression_bomb_check); the warning is an error here, so our limit must be Pillow's
    # or a larger EDGETRANSFER_MAX_PIXELS would never take effect. Process-wide, by design.
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path, formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise DataError(
            f"not a JPEG, PNG, GIF, BMP or WebP image ({sniff(path)})",
            path=path,
            fix="convert it to JPEG or PNG, or delete it",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (N pixels) exceeds limit of M pixels"
        raise _bomb(path, f"{found.group(1)} pixels" if found else "the image size", limit) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"cannot decode, truncated or damaged ({exc})", path=path, fix="re-export the image or delete it"
        ) from None
    if im.format not in ALLOWED_FORMATS:  # belt and braces: formats= above already restricts the plugins
        raise DataError(
            f"{im.format or 'unknown'} content is not an allowed image format",
            path=path,
            fix="convert it to JPEG or PNG, or delete it",
        )
    if im.width * im.height > limit:
        raise _bomb(path, f"{im.width}x{im.height} pixels", limit)
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
        raise DataError(
            f"cannot decode, truncated or damaged ({exc})", path=path, fix="re-export the image or delete it"
        ) from None
    colors = rgb.getcolors(maxcolors=4096)
    info = DecodedInfo(fmt, mode, im.width, im.height, orientation not in (0, 1), len(colors) if colors else 4097)
    return rgb, info


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """16-bit (``I;16*``) or 32-bit (``I``, ``F``) grayscale -> ``L``, scaled rather than clipped.

    Pillow's ``convert`` clips these modes at 255, so a 16-bit gradient came out almost all
    white. ``I;16*`` holds 0..65535: divide by 257 (65535 / 255). ``I`` and ``F`` have no fixed
    range: treated as 16-bit when any value is above 255 (how Pillow's PNG decoder filled ``I``
    before ``I;16``), else as 8-bit values already.
    """
    arr = np.asarray(im).astype(np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=65535.0, neginf=0.0)
    if im.mode in _SIXTEEN_BIT_MODES or arr.max(initial=0) > 255:
        arr = np.clip(arr, 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")


def from_array(arr: np.ndarray) -> Image.Image:
    """An ``HxW`` or ``HxWx3/4`` array -> an RGB image; uint16 is scaled to 8 bits (not wrapped),
    floats are taken as [0, 255] and clipped."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint16:
        arr = np.round(arr / 257.0)
    arr = np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return _to_rgb(Image.fromarray(arr))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        return _to_8bit_gray(im).convert("RGB")
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
        return im.resize((size, size), Image.Resampling.BILINEAR)
    if policy == "crop":
        return ImageOps.fit(im, (size, size), Image.Resampling.BILINEAR)
    if policy == "pad":
        return ImageOps.pad(im, (size, size), Image.Resampling.BILINEAR, color=(0, 0, 0))
    raise ConfigError(f"unknown resize policy {policy!r}", fix=f"use one of {', '.join(RESIZE_POLICIES)}")


def load_array(path: str | Path, size: int, policy: str = "crop") -> np.ndarray:
    """Decode, orient and resize a file into a ``(size, size, 3)`` uint8 array."""
    im, _ = decode(path)
    return np.asarray(resize(im, size, policy), dtype=np.uint8)
