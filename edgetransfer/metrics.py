"""Scores of class probabilities against labels, written once (NumPy only).

Used by training (the run's held-out metrics), evaluation (every exported file) and the
gate, so a confusion matrix or an accuracy means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import RuntimeBackendError


@dataclass(frozen=True)
class Scores:
    accuracy: float
    per_class: tuple[float | None, ...]
    confusion: tuple[tuple[int, ...], ...]
    loss: float


def require_finite(probs: np.ndarray, source: str) -> np.ndarray:
    """``probs`` unchanged, or an error naming ``source`` if any output is NaN or infinite.

    A model that outputs NaN must never pass an accuracy gate by comparing NaN to NaN.
    """
    if not np.all(np.isfinite(probs)):
        bad = int((~np.isfinite(probs)).any(axis=-1).sum()) if probs.ndim > 1 else 1
        raise RuntimeBackendError(
            f"the model output NaN or infinity for {bad} of {len(probs)} input(s)",
            path=source,
            fix="re-export it from a healthy run; check the training curves and calibration",
        )
    return probs


def scores(probs: np.ndarray, labels: np.ndarray, n_classes: int, source: str = "model") -> Scores:
    """Accuracy, per-class accuracy, confusion matrix (rows = truth) and mean cross-entropy."""
    require_finite(probs, source)
    pred = probs.argmax(1)
    conf = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(conf, (labels, pred), 1)
    per = tuple(round(float(conf[c, c] / conf[c].sum()), 4) if conf[c].sum() else None for c in range(n_classes))
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return Scores(
        round(float((pred == labels).mean()), 4),
        per,
        tuple(tuple(int(v) for v in row) for row in conf),
        float(-np.mean(np.log(picked))),
    )


def agreement(probs: np.ndarray, reference: np.ndarray) -> float:
    """Share of inputs where both models pick the same top-1 class."""
    return round(float((probs.argmax(1) == reference.argmax(1)).mean()), 4)
