"""The doctor's remedies that keep every op integer, and its rule for integer-only targets (issue 36).

On a target whose profile is integer-only (``TargetProfile.integer_only``: Edge TPU, NPUs, microcontrollers) a
float op is no remedy (it falls back to the CPU, splits the graph, or the compiler refuses the file), so the
doctor tries only: the format's quantizer options, calibration choices, the weight remedies below (empirical bias
correction, learned rounding: ``weights.py``), then quantization-aware training (``qat.py``). Every attempt's
file is read for float ops (``FormatSpec.float_op_reader``) and one with any is never chosen. Elsewhere the weight
remedies come after calibration and before 16-bit activations and float ops, which cost latency.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .. import formats
from .recipe import QuantRecipe

log = logging.getLogger("edgetransfer")
# Tried in this order, each on the best integer attempt so far (bias correction is cheapest: one pass over 32
# calibration images; learned rounding optimises every layer, ~1 s a layer on 2 cores; both together last).
WEIGHT_STEPS: tuple[tuple[str, ...], ...] = (
    ("bias_correction",),
    ("learned_rounding",),
    ("learned_rounding", "bias_correction"),
)
QAT_EPOCHS = 3  # the doctor's QAT: a few epochs (qat.py); `export --qat --qat-epochs N` chooses


def integer_only_targets(targets: Sequence[Any]) -> str:
    """Why every op of the file must be integer (the integer-only targets' names), or ``""``."""
    names = [t.name for t in targets if getattr(t, "integer_only", False)]
    return f"{', '.join(names)} run{'s' if len(names) == 1 else ''} integer ops only" if names else ""


def float_ops(fmt: str, path) -> list[str]:
    """The float ops of ``path`` (``[]`` when integer end to end, or when the format cannot tell)."""
    reader = formats.get(fmt).float_op_reader_fn()
    return list(reader(path)) if reader is not None else []


def _base(s) -> dict | None:
    """The best integer attempt so far (within the size and p50 bounds where any is)."""
    ok = [a for a in s.attempts if a["status"] == "ok" and not a["keep_float"] and a.get("integer", True)]
    return min(ok, key=lambda a: a["accuracy_drop"]) if ok else None


def weight_remedies(s, recipe: QuantRecipe, calib, calibration, seed: int) -> None:
    """Bias correction, learned rounding, then both, on the best integer attempt's recipe."""
    base = _base(s)
    if base is None:
        return
    for steps in WEIGHT_STEPS:
        if any(a["met_budget"] for a in s.attempts):
            return
        r = QuantRecipe(**base["recipe"])
        r = replace(r, weights=tuple(dict.fromkeys((*r.weights, *steps))))
        s.attempt(" + ".join(w.replace("_", " ") for w in steps), r, s.cals.get(base["attempt"], calib),
                  vs=base["attempt"])  # fmt: skip


def qat_remedy(s, recipe: QuantRecipe, calib, calibration, seed: int) -> None:
    """Quantization-aware training (:data:`QAT_EPOCHS`) on the best integer attempt's recipe."""
    base = _base(s)
    if base is None or any(a["met_budget"] for a in s.attempts):
        return
    r = replace(QuantRecipe(**base["recipe"]), qat_epochs=QAT_EPOCHS, weights=())
    s.attempt(f"quantization-aware training ({QAT_EPOCHS} epochs)", r, s.cals.get(base["attempt"], calib),
              vs=base["attempt"])  # fmt: skip
