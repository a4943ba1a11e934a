"""Calibration images for int8 / int16x8: a class-balanced sample of the run's training split
or a folder, with warnings for sets too small or too uniform to calibrate on."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import data as data_lib
from ... import images
from ...errors import DataError
from ...records import RunManifest
from .._quiet import quiet_onnxruntime_quantization as quiet_ort_calibration

log = logging.getLogger("edgetransfer")
# Below ~100 images the activation ranges of a calibration run are noisy; the TFLite and
# ONNX Runtime guides both suggest 100 to 500 representative samples.
MIN_ADVISED = 100


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
    out: list[data_lib.ImageFile] = []
    i = 0
    while len(out) < n and any(i < len(g) for g in by_class.values()):
        out += [g[i] for g in by_class.values() if i < len(g)][: n - len(out)]
        i += 1
    return out


def calibration_set(run_manifest: RunManifest, source: str | Path, n: int, *, seed: int = 0) -> Calibration:
    """Calibration images for a trained run.

    Args:
        run_manifest: the run's manifest (input size, resize policy, data location).
        source: ``auto`` (a class-balanced sample of the run's training split) or a folder
            (flat, or with class sub-folders).
        n: how many images.
        seed: sampling seed.
    """
    size, policy = run_manifest.input_size, run_manifest.resize_policy
    if str(source) == "auto":
        root = run_manifest.data.root
        cfg = run_manifest.config
        if not Path(root).is_dir():
            raise DataError(
                "the run's training data is gone, so --calibration auto cannot sample it",
                path=root,
                fix="pass --calibration DIR with 100 to 500 representative images",
            )
        ds = data_lib.load(root, val_split=cfg.get("val_split"), seed=cfg.get("seed", 0))
        picked = [f.path for f in _balanced(list(ds.split("train") or ds.files), n, seed)]
        label = f"auto: class-balanced sample of {root} train split (seed {seed})"
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise DataError(
                "calibration folder not found", path=folder, fix="pass a folder of images, or --calibration auto"
            )
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES)
        if not found:
            raise DataError(
                "no images in the calibration folder", path=folder, fix="add 100 to 500 representative images"
            )
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
        raise DataError(
            "no calibration image could be decoded", path=str(source), fix="run `edgetransfer data inspect` on it"
        )
    calib = Calibration(np.stack(arrays).astype(np.float32), label, tuple(used))
    quiet_ort_calibration()  # int8 is next: keep ONNX Runtime's calibration prints off stdout
    for warning in degenerate(calib, n):
        log.warning("WARNING: calibration: %s", warning)
    return calib


def degenerate(calib: Calibration, asked: int) -> list[str]:
    """Why ``calib`` is a poor calibration set (empty when it looks fine).

    int8 fitted to one image, or to images with almost no variation, exports without an
    error and then collapses on real inputs (issue #13: one black image -> 0.33 accuracy).
    """
    out = []
    n = len(calib.images)
    if n < MIN_ADVISED:
        out.append(
            f"only {n} image(s) (asked for {asked}); {MIN_ADVISED} to 500 representative images are advised, "
            "so expect a larger accuracy drop (validate it, or use `export --max-accuracy-drop`)"
        )
    per_image_std = calib.images.reshape(n, -1).std(axis=1)
    if float(per_image_std.max()) < 2.0:  # under 2 grey levels of variation: blank frames
        out.append("every calibration image is (nearly) uniform, e.g. all black: activation ranges will be wrong")
    elif n > 1 and float(np.abs(calib.images - calib.images[:1]).max()) < 1.0:
        out.append("all calibration images are the same image")
    return out
