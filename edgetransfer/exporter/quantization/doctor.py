"""The quantization doctor: an int8 file within an accuracy budget, found automatically.

``export --precision int8 --max-accuracy-drop P`` writes the plain int8 file, measures it against the
float model on the held-out data and, while it loses more than ``P`` points, tries remedies in order of
cost, stopping at the first that fits:

0. the format's quantizer options, which cost no size (``FormatSpec.quantizer_options``; ONNX: empirical
   bias correction, NNCF's quantizer, float biases with unwidened weight scales, an exact input scale, a
   float Softmax output, moving-average ranges, ...), the first :data:`MAX_OPTION_ATTEMPTS`, each kept for
   the next only when it raised the output SNR within the size and p50 bounds;
1. calibration: 2x and 4x the images (up to what the source has); ONNX also the entropy and percentile
   methods and per-tensor weights;
2. 16-bit activations (formats whose quantizer mixes activation widths per tensor,
   ``FormatSpec.activation16_ranker``; ONNX): the activation tensors with the lowest signal-to-noise
   ratio against the float graph, the top 1, 2, 4, 8, 16 kept at 16 bits with int8 weights
   (``keep_float`` entries ``a16:<tensor>``; issue 27);
3. per-layer sensitivity: ops ranked by the error they add (TFLite: ``QuantizationDebugger`` layer
   statistics ``rmse / scale``; ONNX: float vs QDQ activations per node), the top 1, 2, 4, 8, ... kept in
   float (TFLite ``denylisted_nodes``, ONNX ``nodes_to_exclude``);
4. nothing fits: the best attempt is written and :class:`AccuracyBudgetError` (exit 1) names it.

Every attempt is judged against the one it started from (:func:`judge`): the change of output SNR and the
paired 95% interval of the accuracy change; ``moved: false`` marks a remedy that moved single images, not the
error. 16-bit activations are not offered where a target cannot run them (:func:`refuses_activation16`).
Every attempt (recipe, accuracy, drop, size, host p50, ops in float, or why it failed) lands in the file's
manifest (``attempts``); the chosen recipe is written beside it as ``<file>.recipe.json``, which
``export --recipe`` replays exactly.

This module is the search; the attempts and their judging are :mod:`.attempts`, the remedies :mod:`.remedies`.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...errors import ConfigError, DataError, UnsupportedError
from ...evaluation.accuracy import Evaluator
from ...io import write_json
from ...records.run import TrainedModel
from . import integer
from .attempts import (
    AccuracyBudgetError,
    DoctorResult,
    Writer,
    _Search,
)
from .integer import integer_only_targets  # noqa: F401  (the exporter's import point, beside refuses_activation16)
from .recipe import QuantRecipe, RecipeFile
from .remedies import _activation16_remedies, _calibration_remedies, _option_remedies, _sensitivity_remedies


def check_budget(value) -> float:
    """``value`` as a budget in points (0 to 100), or a ConfigError."""
    try:
        points = float(value)
    except (TypeError, ValueError):
        points = math.nan
    if isinstance(value, bool) or not math.isfinite(points) or not 0 <= points <= 100:
        raise ConfigError(
            f"--max-accuracy-drop {value!r}: not a number of points from 0 to 100",
            fix="e.g. --max-accuracy-drop 0.5 (half a point of top-1 accuracy)",
        )
    return points


def prepare(run: TrainedModel, pairs, max_accuracy_drop, data_dir) -> Evaluator | None:
    """Refuse bad input before any work: the budget, a float-only export, no held-out data.

    Returns:
        The evaluator every attempt is scored and timed by, or None when no budget was given.
    """
    if max_accuracy_drop is None:
        if data_dir is not None:
            raise ConfigError("--data is the held-out data of --max-accuracy-drop", fix="add --max-accuracy-drop P")
        return None
    check_budget(max_accuracy_drop)
    if not any(r.precision == "int8" for _, r in pairs):
        raise UnsupportedError(
            "--max-accuracy-drop searches int8 recipes; this export is "
            + ", ".join(sorted({r.precision for _, r in pairs})),
            fix="add --precision int8",
        )
    ev = Evaluator(run, data_dir)
    if len(ev.held.y) == 0:
        raise DataError(
            "no held-out images", path=ev.held.source, fix="pass --data DIR with the model's class folders"
        )
    return ev


def search(
    src,
    run: TrainedModel,
    fmt,
    recipe,
    calib,
    out,
    layout,
    ev: Evaluator,
    budget,
    calibration="auto",
    seed=0,
    *,
    write: Writer,
    activation16: str = "",
    integer_only: str = "",
    sources: Callable | None = None,
) -> DoctorResult:
    """Find an int8 recipe for ``fmt`` within ``budget`` points of the float model, and write it.

    Args:
        src: the format's traced source (``make_source``). run: the TrainedModel.
        recipe, calib: the plain int8 recipe and its calibration set (the first attempt).
        out: the export folder. layout: the file's input layout. ev: from :func:`prepare`.
        budget: ``max_accuracy_drop`` in points. calibration, seed: where more calibration images come from.
        write: the exporter's ``write_artifact`` (each attempt, and the chosen file, are written by it).
        activation16: why 16-bit activations are not offered (a target whose runtime has no 16-bit
            activation kernels, :func:`refuses_activation16`), or ``""`` when they are.
        integer_only: why every op must be integer (``integer.integer_only_targets``), or ``""``: then only
            integer remedies are tried (``integer.py``) and no attempt with a float op is chosen.
        sources: ``recipe -> (source, notes)`` for recipes whose QAT or weight remedies change the weights
            (the exporter's model variants); without it those remedies are not tried.

    Returns:
        The result; the file is written (at its best attempt) even when nothing met the budget.
    """
    start = time.perf_counter()
    budget = check_budget(budget)
    with tempfile.TemporaryDirectory(prefix=".doctor-", dir=out) as tmp:
        s = _Search(src, ev, fmt, layout, budget, Path(tmp), write)
        s.no_activation16, s.integer_only, s.sources = activation16, integer_only, sources
        s.attempt("plain int8", recipe, calib)
        for remedy in _remedies(s):
            if any(a["met_budget"] for a in s.attempts):
                break
            remedy(s, recipe, calib, calibration, seed)
        best = s.best()
        cal = s.cals[best["attempt"]]
        chosen = QuantRecipe(**best["recipe"])
        chosen_src, notes = s.source(chosen)
        art = write(chosen_src, run, fmt, chosen, cal, out, layout, attempts=tuple(s.attempts),
                             keep_float=tuple(best["keep_float"]), notes=notes)  # fmt: skip
    measured = {k: best[k] for k in ("attempt", "remedy", "accuracy", "accuracy_drop", "size_bytes", "p50_ms")}
    measured.update(reference_accuracy=s.reference, max_accuracy_drop=budget, held_out=ev.held.to_json())
    recipe_path = write_json(
        art.path.with_name(art.path.name + ".recipe.json"),
        RecipeFile(fmt, chosen, tuple(best["keep_float"]), str(calibration), seed, measured).to_json(),
    )
    return DoctorResult(
        art, tuple(s.attempts), best["attempt"], best["met_budget"], budget, s.reference, Path(recipe_path),
        round(time.perf_counter() - start, 1),
    )  # fmt: skip


def _remedies(s: _Search) -> tuple:
    """The remedies in order of cost: integer ones only for an integer-only target (``integer.py``)."""
    weights = (integer.weight_remedies,) if s.sources is not None else ()
    if s.integer_only:
        return (_option_remedies, _calibration_remedies, *weights, *((integer.qat_remedy,) if weights else ()))
    return (_option_remedies, _calibration_remedies, *weights, _activation16_remedies, _sensitivity_remedies)


def refuses_activation16(targets: Sequence[Any]) -> str:
    """Why no recipe with 16-bit activation tensors may be offered for ``targets`` (target profiles), or
    ``""``: a target whose precisions lack ``int16x8`` has a runtime without 16-bit activation kernels
    (an Edge TPU, a TFLM part without them), so such a file would not run there."""
    refused = [t.name for t in targets if "int16x8" not in t.precisions]
    return (
        f"16-bit activations not offered: {', '.join(refused)} cannot run them (no int16x8 precision)"
        if refused
        else ""
    )


def raise_unmet(results: Sequence[DoctorResult], artifacts) -> None:
    """Raise :class:`AccuracyBudgetError` (exit 1) naming the files whose best attempt missed the budget."""
    unmet = [r for r in results if not r.met]
    if not unmet:
        return
    parts = []
    for r in unmet:
        best = r.attempts[r.chosen - 1]
        parts.append(
            f"{r.artifact.path.name}: best attempt #{best['attempt']} ({best['remedy']}) loses "
            f"{best['accuracy_drop']:.2f} points (budget {r.budget:g})"
        )
    from .diagnose import unmet_note  # issue 27: the tensors adding most error in each file written

    note = unmet_note(unmet)
    raise AccuracyBudgetError(
        "no int8 recipe met --max-accuracy-drop; the best attempt was written: "
        + "; ".join(parts)
        + (f"\n  diagnosis: {note}" if note else ""),
        path=unmet[0].artifact.path,
        fix="raise --max-accuracy-drop, calibrate on more representative images (--calibration DIR), "
        "or ship fp16 / int16x8 for this model",
        results=results,
        artifacts=artifacts,
    )
