"""Held-out data of a run and scoring a model on it: the layer below export and evaluation.

The quantization doctor (export) and evaluation both score files on the run's held-out split,
so these functions live below both of them and import neither.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import data as data_lib
from .. import images, metrics
from .. import memo as memo_lib
from ..errors import DataError
from ..memo import Memo
from ..records.run import TrainedModel


@dataclass(frozen=True)
class HeldOut:
    """Images to evaluate on, as the model takes them, and where they came from."""

    x: np.ndarray
    y: np.ndarray
    source: str  # folder
    split: str  # "val", "test", "seeded 20% split (seed 0)", "whole folder"
    # sha256 of the files (names relative to the folder, labels, bytes) and how they are resized: the key
    # of a float reference stored with an export (edgetransfer.evaluation.reference); pixels are not hashed, so a
    # reference made with another Pillow's decoder still matches the same files
    digest: str = ""

    def describe(self) -> str:
        return f"{len(self.y)} images of {self.source} ({self.split})"

    def to_json(self) -> dict:
        return {"source": self.source, "split": self.split, "images": len(self.y)}


def held_out(run: TrainedModel, data_dir: str | Path | None = None) -> HeldOut:
    """The held-out images: the folder's val/ (or test/); for the run's own single-pool folder,
    the same seeded split training held out; any other folder is held out whole. Without
    ``data_dir``, the run's own data (as its manifest records it)."""
    data_dir = Path(data_dir) if data_dir is not None else Path(run.manifest.data.root)
    if not data_dir.is_dir():
        raise DataError(
            "held-out data folder not found", path=data_dir, fix="pass --data DIR (the run's data has moved or gone)"
        )
    cfg = run.manifest.config
    same = Path(run.manifest.data.root).resolve() == data_dir.resolve()
    ds = data_lib.load(data_dir)
    split = "val" if ds.split("val") else "test" if ds.split("test") else "whole folder"
    if split == "whole folder" and same and cfg.get("val_split"):
        ds = data_lib.load(data_dir, val_split=cfg["val_split"], seed=cfg.get("seed", 0))
        split = f"seeded {cfg['val_split']:.0%} split (seed {cfg.get('seed', 0)}), as in training"
    if list(ds.classes) != run.classes:
        raise DataError(
            f"classes {list(ds.classes)} differ from the model's {run.classes}",
            path=data_dir,
            fix="validate on a folder with the model's class folders",
        )
    files = ds.split("val") or ds.split("test") or ds.files
    policy = run.manifest.resize_policy
    x = np.stack([images.load_array(f.path, run.input_size, policy) for f in files]).astype(np.float32)
    return HeldOut(x, np.array([f.label for f in files]), str(data_dir), split, files_digest(data_dir, files, run))


def files_digest(root: Path, files, run: TrainedModel) -> str:
    """sha256 of the held-out files by content, with their labels and the model's input size and resize policy."""
    h = hashlib.sha256(f"{run.input_size} {run.manifest.resize_policy}".encode())
    for f in files:
        rel = os.path.relpath(Path(f.path).resolve(), root.resolve()).replace(os.sep, "/")
        h.update(f"\x00{rel}\x00{int(f.label)}\x00".encode())
        h.update(hashlib.sha256(Path(f.path).read_bytes()).digest())
    return h.hexdigest()


def predict(session, x: np.ndarray, source: str = "model") -> np.ndarray:
    """Probabilities of ``session`` on ``x``, one image at a time (batch-1 files); non-finite is an error."""
    return metrics.require_finite(np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))]), source)


def reference_probs(run: TrainedModel, x: np.ndarray, memo: Memo | None = None, images: str = ""):
    """(probabilities, Keras model); ``images``: the digest of ``x`` when the caller has it."""
    model = run.load_model()
    if memo is not None and not images:
        images = memo_lib.digest(x)
    key = memo_lib.digest("reference", memo_lib.model_digest(model), images) if memo is not None else ""
    probs = memo.get_array("predictions", key) if memo is not None else None
    if probs is None:
        probs = metrics.require_finite(np.asarray(model.predict(x, verbose=0)), str(run.model_path))
        if memo is not None:
            memo.put_array("predictions", key, probs)
    return probs, model


def probe_batch(size: int) -> np.ndarray:
    """The one random batch used to time a model (seeded, RGB [0, 255], NHWC, batch 1)."""
    return np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)


def to_model_input(x: np.ndarray, transform: dict | None) -> np.ndarray:
    """The float batch to hand a file's session for RGB [0, 255] images ``x``.

    ``transform`` is what ``edgetransfer import`` recorded for a file from another tool
    (``metadata["imported"]["input_transform"]``): ``pixels`` (every file edgetransfer exported),
    ``normalize`` (scale/offset per channel, optionally BGR, for a float input), or ``raw_quantized``
    (an integer input whose quantization encodes the normalised range takes the raw pixels).
    """
    kind = (transform or {}).get("kind", "pixels")
    if transform is None or kind == "pixels":
        return x
    if kind == "normalize":
        x = np.asarray(x, dtype=np.float32)
        if transform.get("bgr"):
            x = x[..., ::-1]
        return x * np.asarray(transform["scale"], np.float32) + np.asarray(transform["offset"], np.float32)
    if kind == "raw_quantized":
        return ((np.asarray(x, np.float32) - transform["zero_point"]) * transform["scale"]).astype(np.float32)
    raise DataError(f"unknown input transform {kind!r} in the artifact manifest", fix="import the file again")


def to_probabilities(y: np.ndarray, output: str | None) -> np.ndarray:
    """Scores as probabilities: a softmax over ``logits`` (a foreign file's recorded output), else as they are."""
    if output != "logits":
        return y
    z = np.asarray(y, np.float64) - np.max(y, axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Adapted:
    """A session of a file from another tool, fed and read the way its import recorded (identity otherwise)."""

    def __init__(self, session, imported: dict | None):
        self.session = session
        self.transform = (imported or {}).get("input_transform")
        self.output = (imported or {}).get("output")

    def run(self, batch: np.ndarray) -> np.ndarray:
        return to_probabilities(self.session.run(to_model_input(batch, self.transform)), self.output)
