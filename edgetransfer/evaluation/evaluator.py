"""Measure once: every figure of an artifact on a target comes from :func:`measure`.

Accuracy on the held-out data (in the runtime the target uses for it), latency on the
target's own path (this host's runtimes, the device's runner, or an estimate: chosen in
:func:`measure_latency` and nowhere else), memory where the target's runtime measures it,
delegate compatibility. ``validate`` writes a :class:`~edgetransfer.records.ValidationReport`
of such measurements; ``check`` judges one (:mod:`edgetransfer.gate`). Never raises on a
missed budget; does raise on what cannot be measured at all. Runtime capabilities come from
the registry (:mod:`edgetransfer.runtime.spec`): no runtime or format name is compared here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..exporter.artifacts import ExportedArtifact
from ..io import write_json
from ..records import DEFAULT_PICK_ACCURACY_DROP
from ..records.measure import Best, Measurement, ValidationReport
from ..records.vocab import MeasureMode
from . import compat, latency, speed
from .accuracy import Scores
from .memory import peak_memory_mb
from .timing import REPORT_REPEATS, measure_latency, measure_ratio, runtime_of

FLOAT = "keras-float"
log = logging.getLogger("edgetransfer")


def measure(
    art: ExportedArtifact,
    target,
    *,
    scores: Scores | None = None,
    budget_s: float = 1.0,
    repeats: int = REPORT_REPEATS,
    max_repeats: int | None = None,
    latency_budget_ms: float | None = None,
    reference: ExportedArtifact | None = None,
    ratio_budget: float | None = None,
    with_latency: bool = True,
    with_peak_memory: bool = False,
    p90_samples: Sequence[float] | None = None,
    settings: dict[str, dict] | None = None,
    profile: bool = False,
    execution: str = "",
    tuning: dict | None = None,
) -> Measurement:
    """Everything asked of ``art`` on ``target``, measured once, as a record.

    Args:
        scores: accuracy figures already computed (:func:`score`), or ``None`` for none.
        latency_budget_ms / ratio_budget: repeat until the t-interval is clear of these.
        reference: also measure p50(art)/p50(reference) per repeat (``--max-latency-ratio``).
        p90_samples: p90s measured elsewhere (bench JSON of this file) instead of measuring here.
        settings: ``{runtime: settings}`` to load the host runtimes with (tuned, recorded or bf16);
            the winner's are recorded (``Measurement.settings``).
        profile: per-op profiles too (:func:`edgetransfer.evaluation.speed.profiles_for`).
        execution / tuning: recorded as given (``bf16``; ``validate --tune``'s summary).
    """
    rt = runtime_of(target)
    rt.require_supported(art.path)
    lat: latency.Latency | None = None
    p90s: tuple[float, ...] = ()
    if p90_samples is not None:  # p90s measured elsewhere (bench JSON): they are the figure
        p90s = tuple(p90_samples)
        mid = float(np.median(p90s))
        lat = latency.Latency(
            mid, mid, mid, float(np.mean(p90s)), 0.0, 0, latency.MEASURED, detail={"source": "latency samples"}
        )
    elif with_latency:
        lat, p90s = measure_latency(
            art,
            target,
            budget_s=budget_s,
            repeats=repeats,
            max_repeats=max_repeats,
            budget_ms=latency_budget_ms,
            settings=settings,
        )
    ratios: tuple[float, ...] = ()
    if reference is not None:
        ratios = measure_ratio(
            art, reference, target, budget_s=budget_s, repeats=repeats, max_repeats=max_repeats, max_ratio=ratio_budget
        )
    peak = None
    if with_peak_memory:
        on_device_peak = lat.peak_memory_mb if lat is not None and lat.provenance == latency.ON_DEVICE else None
        if on_device_peak is not None:
            peak = on_device_peak
        elif target.measure == MeasureMode.HOST and rt.measures_latency_here:
            peak = peak_memory_mb(art, target)
    ran = list(lat.detail.get("runtimes") or {}) if lat is not None else []
    used = (settings or {}).get(lat.detail.get("runtime", "")) if lat is not None else None
    profiles = speed.profiles_for(art, target, {n: (settings or {}).get(n, {}) for n in ran}) if profile else ()
    comp = None
    if target.delegate is not None:
        comp = compat.for_artifact(art.path, target.delegate, art.precision).to_json()
    return Measurement(
        artifact=str(art.path),
        format=art.format,
        precision=art.precision,
        target=target.name,
        size_bytes=art.size_bytes,
        latency=lat,
        sha256=art.sha256,
        target_profile=target.path,
        accuracy=scores.accuracy if scores else None,
        agreement=scores.agreement if scores else None,
        accuracy_drop=scores.drop if scores else None,
        accuracy_split=scores.split if scores else "",
        per_class_accuracy=scores.per_class if scores else (),
        p90_repeats=p90s,
        ratio_reference=str(reference.path) if reference is not None else "",
        ratio_repeats=ratios,
        compatibility=comp,
        memory=rt.measure_memory(art.path, art.size_bytes, target),
        peak_memory_mb=peak,
        settings=dict(used or {}),
        execution=execution,
        profiles=profiles,
        tuning=dict(tuning or {}),
    )


def best_per_target(records: Sequence[Measurement], targets: dict) -> dict[str, Best]:
    """Per target: the fastest file (p50) within the target's accuracy budget that fits its memory; a bf16
    execution of an fp32 file (``--bf16``) competes like any other measurement, its accuracy its own."""
    best = {}
    for name, t in targets.items():
        limit = t.budgets.accuracy_drop if t.budgets.accuracy_drop is not None else DEFAULT_PICK_ACCURACY_DROP
        ok = [
            m
            for m in records
            if m.target == name
            and (m.accuracy_drop or 0) <= limit
            and (m.memory is None or m.memory.get("fits", True))
        ]
        timed = [(m, m.latency) for m in ok if m.latency is not None]
        if timed:
            pick, lat = min(timed, key=lambda pair: pair[1].p50)
            best[name] = Best(
                pick.artifact,
                lat.p50,
                lat.provenance,
                pick.accuracy,
                pick.runtime,
                pick.execution,
                dict(pick.settings),
            )
    return best


def save(report: ValidationReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically), for ``check --from-report`` or a CI job to start from."""
    return write_json(path, report.to_json())


def load_report(path: str | Path) -> ValidationReport:
    """A ``validation.json`` written by ``validate``; another document or an older schema is refused naming it."""
    return ValidationReport.read(path)
