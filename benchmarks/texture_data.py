"""A 10-class image folder far from ImageNet, built offline from scikit-image's sample images.

    python benchmarks/texture_data.py [--out DIR] [--train 40] [--val 20] [--size 96] [--seed 0]

Each class is one of scikit-image's bundled scientific or texture images (``skimage.data``: no
download): brick, grass and gravel textures, a cell and an immunohistochemistry micrograph, the
Hubble deep field, the Moon's surface, a retina fundus photo, a scanned page and printed text.
A sample is a random square patch of its source (side 48-96 px, so the scale varies), turned
by a multiple of 90 degrees, maybe mirrored, its contrast jittered (gamma 0.8-1.25), converted
to grey (colour would give the micrographs away) and resized to ``--size`` px.

Training patches come from the left 70% of each source image and validation patches from the
right 30%, so no validation pixel was ever seen in training (overlapping random crops would
flatter every model). The retina's patches come from the centre of the fundus (its corners are
black). Same arguments, same files: everything is drawn from one seeded generator.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

# class -> (skimage.data function, region of the source used as (top, bottom, left, right) fractions)
SOURCES = {
    "brick": ("brick", (0, 1, 0, 1)),
    "grass": ("grass", (0, 1, 0, 1)),
    "gravel": ("gravel", (0, 1, 0, 1)),
    "cell": ("cell", (0, 1, 0, 1)),
    "ihc": ("immunohistochemistry", (0, 1, 0, 1)),
    "hubble": ("hubble_deep_field", (0, 1, 0, 1)),
    "moon": ("moon", (0, 1, 0, 1)),
    "retina": ("retina", (0.25, 0.75, 0.25, 0.75)),
    "page": ("page", (0, 1, 0, 1)),
    "text": ("text", (0, 1, 0, 1)),
}
TRAIN_WIDTH = 0.7  # the left share of each source that training patches come from
SIDES = (48, 96)  # patch side range in source pixels (every source is at least 172 px high)


def _grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma
    return img.astype(np.float64) / 255.0


def _patches(src: np.ndarray, n: int, x0: int, x1: int, size: int, rng: np.random.Generator):
    from PIL import Image

    h = src.shape[0]
    for _ in range(n):
        side = int(rng.integers(SIDES[0], min(SIDES[1], h, x1 - x0) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(x0, x1 - side + 1))
        p = np.rot90(src[y : y + side, x : x + side], int(rng.integers(4)))
        if rng.random() < 0.5:
            p = p[:, ::-1]
        p = np.clip(p, 0, 1) ** rng.uniform(0.8, 1.25)
        grey = Image.fromarray((p * 255).round().astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
        yield grey.convert("RGB")


def build(out: str | Path, n_train: int = 40, n_val: int = 20, size: int = 96, seed: int = 0) -> Path:
    """Write ``out/{train,val}/<class>/<i>.png``; returns ``out``."""
    import skimage.data

    out = Path(out)
    rng = np.random.default_rng(seed)
    for cls, (fn, (top, bottom, left, right)) in SOURCES.items():
        img = _grey(getattr(skimage.data, fn)())
        h, w = img.shape
        src = img[int(top * h) : int(bottom * h), int(left * w) : int(right * w)]
        cut = int(src.shape[1] * TRAIN_WIDTH)
        for split, n, (x0, x1) in (("train", n_train, (0, cut)), ("val", n_val, (cut, src.shape[1]))):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i, patch in enumerate(_patches(src, n, x0, x1, size, rng)):
                patch.save(folder / f"{cls}_{i:03d}.png")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="folder to write (default: a new temporary one)")
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--val", type=int, default=20)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="et-textures-")
    print(build(out, args.train, args.val, args.size, args.seed))


if __name__ == "__main__":
    main()
