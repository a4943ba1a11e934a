"""Error of a quantized graph's tensors against the float graph's same tensors, accumulated over images.

Shared by the formats' ``tensor_diagnosis`` functions (``formats/tflite.py``, ``formats/onnx.py``): each
runs both graphs on the same images, hands every matched pair of tensors to :meth:`TensorStats.add`, and
turns the sums into rows with :meth:`TensorStats.row`. The measures are those of ai-edge-quantizer's
numeric validation and ONNX Runtime's ``qdq_loss_debug``: signal-to-noise ratio and cosine similarity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FLOOR_DB = 99.0  # an error-free tensor (or a NSR under 1e-9.9): shown as 99 dB, not infinity


def snr_db(nsr: float) -> float:
    """Signal-to-noise ratio in dB of a noise-to-signal ratio (sum of squared error / sum of squares)."""
    return FLOOR_DB if nsr <= 10 ** (-FLOOR_DB / 10) else round(-10 * math.log10(nsr), 2)


class TensorStats:
    """Sums over images per tensor: squared error, the float tensor's and the quantized tensor's squares, and
    their dot product (a cosine over all images' values, not a mean of per-image cosines)."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}

    def add(self, name: str, ref, got) -> None:
        """One image's float tensor ``ref`` and quantized (dequantized) tensor ``got``; other shapes are skipped."""
        a, b = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
        if a.shape != b.shape:
            return
        s = np.array([((a - b) ** 2).sum(), (a * a).sum(), (b * b).sum(), (a * b).sum()])
        self.sums[name] = self.sums.get(name, 0) + s

    def nsr(self, name: str) -> float | None:
        s = self.sums.get(name)
        return None if s is None or s[1] <= 0 else float(s[0] / s[1])

    def row(self, tensor: str, inputs: Sequence[str], **fields) -> dict | None:
        """The diagnosis row of ``tensor`` (``None`` when it was never matched or is all zeros): ``nsr``,
        ``snr_db``, ``cosine`` and ``added``, its NSR minus the worst of its ``inputs``' (the error its op
        adds), plus ``fields``."""
        nsr = self.nsr(tensor)
        if nsr is None:
            return None
        err, aa, bb, ab = self.sums[tensor]
        cosine = float(ab / math.sqrt(aa * bb)) if aa > 0 and bb > 0 else 0.0
        worst_in = max((n for n in (self.nsr(i) for i in inputs) if n is not None), default=0.0)
        added = nsr - worst_in
        return {
            "tensor": tensor,
            **fields,
            "nsr": nsr,
            "snr_db": snr_db(nsr),
            "cosine": round(cosine, 6),
            "added": added,
            "added_db": snr_db(added) if added > 0 else FLOOR_DB,
        }
