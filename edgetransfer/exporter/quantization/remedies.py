"""The doctor's remedies, in order of cost.

Quantizer options, calibration, 16-bit activations, then ops kept in float by sensitivity; each tries
attempts through the search (:class:`.attempts._Search`) until one meets the budget.
"""

from __future__ import annotations

import time

from .. import formats
from .attempts import MAX_P50_RATIO, MAX_SIZE_RATIO, SNR_MOVED_DB, _Search, log, recipe_dict
from .calibration import Calibration, calibration_set
from .recipe import QuantRecipe

K_STEPS = (1, 2, 4, 8, 16, 32)  # ops kept in float, doubling: the search costs log2(ops) attempts


SENSITIVITY_IMAGES = 32  # per-layer error is a mean over activations: 32 images rank the layers stably


# ONNX Runtime's HistogramCalibrater (entropy / percentile) keeps every image's activations in memory
# (onnxruntime/quantization/calibrate.py, collect_data): ~30 MB per 224-px Lite0 image, so 64 images ~2 GB.
HISTOGRAM_MAX_IMAGES = 64


A16_STEPS = (1, 2, 4, 8, 16)  # activation tensors kept at 16 bits


MAX_OPTION_ATTEMPTS = 6  # quantizer options tried (ONNX has 8, best first; each costs ~the plain attempt's time)


def _within_cost(s: _Search, a: dict) -> bool:
    """``a`` is within the size and p50 bounds against the plain int8 file (attempt 1)."""
    plain = s.attempts[0]
    if plain.get("status") != "ok" or a.get("status") != "ok":
        return False
    return a["size_bytes"] <= MAX_SIZE_RATIO * plain["size_bytes"] and a["p50_ms"] <= MAX_P50_RATIO * plain["p50_ms"]


def _best_ok(s: _Search, all_int8: bool = False) -> dict | None:
    """The attempt with the smallest drop (within the size and p50 bounds where any is) to build on."""
    ok = [
        a for a in s.attempts if a["status"] == "ok" and a.get("integer", True) and not (all_int8 and a["keep_float"])
    ]
    ok = [a for a in ok if _within_cost(s, a)] or ok
    return min(ok, key=lambda a: a["accuracy_drop"]) if ok else None


def _met(s: _Search) -> bool:
    return any(a["met_budget"] for a in s.attempts)


def _calibration_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """2x then 4x the calibration images; then, where the format has them (``FormatSpec.calibration_methods``,
    ``weight_granularities``; ONNX), the other calibration methods and the other weight granularity."""
    from dataclasses import replace

    spec = formats.get(s.fmt)
    have = len(calib.images)
    start = _best_ok(s, all_int8=True) or s.attempts[0]  # the options chosen so far are kept
    for factor in (2, 4):
        if _met(s):
            return
        cal = calibration_set(s.run.manifest, calibration, factor * recipe.calibration_size, seed=seed)
        if len(cal.images) <= have:
            break  # the source has no more images
        have = len(cal.images)
        r = replace(QuantRecipe(**start["recipe"]), calibration_size=have)
        s.attempt(f"calibration {have} images", r, cal, vs=start["attempt"])
    base = _best_ok(s) or s.attempts[0]
    base_cal = s.cals.get(base["attempt"], calib)
    for method in spec.calibration_methods[1:]:  # the first is the default, tried already
        if _met(s):
            return
        n = min(len(base_cal.images), HISTOGRAM_MAX_IMAGES)
        cal = Calibration(base_cal.images[:n], base_cal.source, base_cal.files[:n])  # a prefix: replays exactly
        r = replace(QuantRecipe(**base["recipe"]), method=method, calibration_size=n)
        s.attempt(f"calibration method {method} ({n} images)", r, cal, vs=base["attempt"])
    if not _met(s) and len(spec.weight_granularities) > 1:
        base = _best_ok(s) or s.attempts[0]
        r = QuantRecipe(**base["recipe"])
        r = replace(r, per_channel=not r.per_channel)
        s.attempt(f"{'per-channel' if r.per_channel else 'per-tensor'} weights", r, s.cals.get(base["attempt"], calib),
                  vs=base["attempt"])  # fmt: skip


def _option_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """The format's int8 writer options (``FormatSpec.quantizer_options``: scale, range, bias and weight
    rounding fixes), each tried on the best all-int8 recipe so far and kept for the next when it raised the
    output SNR by :data:`SNR_MOVED_DB`; one that moved nothing is recorded as such and dropped."""
    from dataclasses import replace

    options = formats.get(s.fmt).quantizer_options
    base = s.attempts[0]
    if not options or base["status"] != "ok":
        return
    plain = QuantRecipe(**base["recipe"])
    for option in options[:MAX_OPTION_ATTEMPTS]:
        if _met(s):
            return
        r = QuantRecipe(**base["recipe"])
        a = s.attempt(f"option {option}", replace(r, options=(*r.options, option)), calib, vs=base["attempt"])
        if a["status"] != "ok" and r.options:  # an option that does not combine with those kept: alone
            a = s.attempt(f"option {option} alone", replace(plain, options=(option,)), calib)
        gain = a.get("snr_change_db")
        if (
            a.get("moved")
            and gain is not None
            and gain >= SNR_MOVED_DB
            and _within_cost(s, a)
            and a.get("integer", True)
        ):
            base = a  # the next option builds on this one


def _failed_analysis(s: _Search, what: str, r: QuantRecipe, cal: Calibration, start: float, exc: Exception) -> None:
    """An analysis step that crashed: recorded as a failed attempt (the search goes on with the next remedy)."""
    s.attempts.append(
        {
            "attempt": len(s.attempts) + 1,
            "remedy": what,
            "recipe": recipe_dict(r),
            "calibration_count": len(cal.images),
            "keep_float": [],
            "status": "failed",
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
            "met_budget": False,
            "seconds": round(time.perf_counter() - start, 2),
        }
    )


def _activation16_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """Keep the 1, 2, 4, 8, 16 lowest-SNR activation tensors of the best attempt so far at 16 bits."""
    base = _best_ok(s)
    ranker = formats.get(s.fmt).activation16_ranker_fn()
    if base is None or ranker is None:
        return
    if s.no_activation16:
        log.info("doctor %s: %s", s.fmt, s.no_activation16)
        s.attempts.append({"attempt": len(s.attempts) + 1, "remedy": "16-bit activations", "recipe": base["recipe"],
                           "calibration_count": base["calibration_count"], "keep_float": [], "status": "skipped",
                           "error": s.no_activation16, "met_budget": False, "seconds": 0.0})  # fmt: skip
        return
    r, cal = QuantRecipe(**base["recipe"]), s.cals[base["attempt"]]
    start = time.perf_counter()
    try:
        ranked = ranker(s.source(r)[0], s.paths[base["attempt"]], cal, layout=s.layout, images=SENSITIVITY_IMAGES)
    except Exception as exc:
        _failed_analysis(s, "per-tensor SNR analysis", r, cal, start, exc)
        return
    log.info("doctor %s: lowest-SNR activations: %s", s.fmt, ", ".join(ranked[:8]))
    plain_p50 = s.attempts[0].get("p50_ms")
    for k in A16_STEPS:
        if _met(s) or k > len(ranked):
            return
        a = s.attempt(f"16-bit activations top-{k} low-SNR tensors", r, cal, ranked[:k], vs=base["attempt"])
        if a["status"] != "ok":
            return  # the recipe cannot take 16-bit tensors (e.g. an NNCF-quantized file): wider fails too
        if plain_p50 and a["status"] == "ok" and a["p50_ms"] > MAX_P50_RATIO * plain_p50:
            # more 16-bit tensors only add ops outside the fused int8 kernels: stop here
            log.info("doctor %s: 16-bit activations over %.1fx the plain p50, not widened further", s.fmt,
                     MAX_P50_RATIO)  # fmt: skip
            return


def _sensitivity_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """Rank the ops of the best all-int8 attempt so far by the error they add; keep the top 1, 2, 4, ... in float."""
    base = _best_ok(s, all_int8=True)
    if base is None:
        return
    r, cal = QuantRecipe(**base["recipe"]), s.cals[base["attempt"]]
    start = time.perf_counter()
    try:
        ranker = formats.get(s.fmt).sensitivity_ranker_fn()
        if ranker is None:
            return  # a format without a ranker: nothing more to try
        path = s.paths[base["attempt"]]
        allowance = (MAX_SIZE_RATIO - 1) * path.stat().st_size
        ranked = ranker(
            s.source(r)[0], path, cal, layout=s.layout, images=SENSITIVITY_IMAGES, size_allowance=allowance
        )
    except Exception as exc:  # the analysis is a remedy too: a failure is recorded and the search ends here
        _failed_analysis(s, "per-layer sensitivity analysis", r, cal, start, exc)
        return
    log.info("doctor %s: most sensitive ops: %s", s.fmt, ", ".join(ranked[:8]))
    for k in K_STEPS:
        k = min(k, len(ranked))
        done = any(a["keep_float"] == ranked[:k] and a["recipe"] == recipe_dict(r) for a in s.attempts)
        if _met(s) or k == 0 or done:
            if _met(s) or k == len(ranked):
                return
            continue
        s.attempt(f"float top-{k} sensitive ops", r, cal, ranked[:k], vs=base["attempt"])
