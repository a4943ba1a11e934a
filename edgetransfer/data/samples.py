"""Real sample datasets that install from PyPI, written out as image folders.

Used by ``quickstart``, the tests and the benchmarks, so a fresh machine with no network
but the package registries can run the whole path on real data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import _lazy
from ..io import default_mode


def write_digits(out_dir: str | Path, *, size: int = 32, per_class: int | None = None) -> Path:
    """Write scikit-learn's handwritten digits (1,797 real 8x8 scans) as ``out_dir/<digit>/*.png``.

    Args:
        out_dir: target folder; reused as is when it already holds the full set.
        size: side of the written PNGs (upscaled bilinearly from 8x8).
        per_class: keep only the first N images of each digit (for fast tests).

    Returns:
        The folder, written atomically (a temporary sibling renamed into place).
    """
    out = Path(out_dir)
    marker = out / ".complete"
    if marker.exists():
        return out
    digits = _lazy.require("sklearn.datasets").load_digits()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes it 0700; give what mkdir would
    seen: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        label = int(label)
        if per_class is not None and seen.get(label, 0) >= per_class:
            continue
        seen[label] = seen.get(label, 0) + 1
        pixels = (np.asarray(img) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        folder = tmp / str(label)
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")
    (tmp / ".complete").write_text("sklearn.datasets.load_digits\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def sample_photos() -> dict[str, np.ndarray]:
    """scikit-image's real sample photos with their ImageNet-1k class index where one fits.

    Returns:
        ``{name: RGB uint8 array}`` for ``chelsea`` (a tabby cat), ``coffee`` (a cup of
        coffee), ``astronaut`` and ``rocket``.
    """
    data = _lazy.require("skimage.data", extra="dev")
    return {name: getattr(data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")}
