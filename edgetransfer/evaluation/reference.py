"""The float model's held-out predictions, stored with the export (issue #39, item 5).

``export`` writes ``reference.npz`` beside the files and a :class:`~edgetransfer.records.FloatReference`
in the folder's ``manifest.json``, keyed by the held-out data's digest
(:attr:`edgetransfer.evaluation.heldout.HeldOut.digest`). ``check`` and ``validate`` with an accuracy budget
read it (:func:`find`) and never load TensorFlow or Keras when it matches the images they score on;
when it does not (other data, an export made before references were stored), they fall back to the
Keras model as before, saying why.

Why the Keras predictions and not the fp32 file's: they are the figure the accuracy drop has always
been measured against (the fp32 export matches them to 1e-5, so either would do).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import metrics
from ..errors import ConfigError
from ..io import atomic_path, sha256_file
from ..records import ExportIndex, FloatReference
from .heldout import HeldOut

log = logging.getLogger("edgetransfer")
FILE = "reference.npz"
INDEX = "manifest.json"


def write(out: Path, ho: HeldOut, probs: np.ndarray, model_path: Path | None) -> FloatReference:
    """Write ``out/reference.npz`` (atomically) and return its record for the export index."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or len(probs) != len(ho.y) or not ho.digest:
        raise ValueError(f"reference predictions of shape {probs.shape} for {len(ho.y)} images")
    with atomic_path(out / FILE) as tmp, open(tmp, "wb") as fh:  # closed before atomic_path renames it
        np.savez(fh, probs=probs, labels=np.asarray(ho.y, dtype=np.int64))
    acc = metrics.scores(probs, ho.y, probs.shape[1], str(model_path or "float model")).accuracy
    return FloatReference(
        file=FILE,
        data_digest=ho.digest,
        images=len(ho.y),
        classes=int(probs.shape[1]),
        accuracy=float(acc),
        source=ho.source,
        split=ho.split,
        model_sha256=sha256_file(model_path) if model_path is not None and model_path.is_file() else "",
    )


def stored(folder: Path) -> FloatReference | None:
    """The reference record of the export in ``folder``, or None (no index, an older one, or none stored)."""
    index = folder / INDEX
    if not index.is_file():
        return None
    try:
        return ExportIndex.read(index).reference
    except ConfigError:  # not an export index (a run folder's manifest), or an unreadable one
        return None


def find(artifact: Path, ho: HeldOut, n_classes: int) -> tuple[np.ndarray, float] | None:
    """(the float model's probabilities, its accuracy) on ``ho`` from the export ``artifact`` belongs to,
    or None when the export stored none for these images (then the caller runs the float model).

    The file is data: loaded without pickle, its shape and values checked against ``ho``.
    """
    folder = Path(artifact).parent
    ref = stored(folder)
    if ref is None:
        log.info("note: %s has no stored float reference: running the float model", folder)
        return None
    if ref.data_digest != ho.digest:
        log.warning(
            "note: the float reference stored with %s was made on other images (%s, %s): running the float model",
            folder,
            ref.source or "?",
            ref.split or "?",
        )
        return None
    path = folder / Path(ref.file).name
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, labels = np.asarray(z["probs"], np.float32), np.asarray(z["labels"])
    except (OSError, KeyError, ValueError) as exc:
        log.warning("note: the float reference %s cannot be read (%s): running the float model", path, exc)
        return None
    if probs.shape != (len(ho.y), n_classes) or not np.array_equal(labels, ho.y) or not np.isfinite(probs).all():
        log.warning("note: the float reference %s does not fit these images: running the float model", path)
        return None
    return probs, metrics.scores(probs, ho.y, n_classes, str(path)).accuracy
