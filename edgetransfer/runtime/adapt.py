"""A file from another tool, fed and read the way ``edgetransfer import`` recorded it (NumPy only).

``metadata["imported"]`` holds the file's ``input_transform`` (how RGB [0, 255] pixels become its
input) and its ``output`` (``probabilities`` or ``logits``). These helpers turn pixels into the float
batch a session takes and outputs into probabilities; they sit with the runtimes because every
caller that opens a session on such a file (the evaluator on this host, a device's accuracy run)
needs them, and they need nothing but NumPy. :func:`predict` runs a session over images one at a time.
"""

from __future__ import annotations

import numpy as np

from .. import metrics
from ..errors import DataError


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


def predict(session, x: np.ndarray, source: str = "model") -> np.ndarray:
    """Probabilities of ``session`` on ``x``, one image at a time (batch-1 files); non-finite is an error."""
    return metrics.require_finite(np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))]), source)
