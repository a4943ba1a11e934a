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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import write_json
from ..records.export import ExportedArtifact
from ..records.measure import Measurement, ValidationReport
from ..records.vocab import MeasureMode
from ..runtime import latency
from . import compat, delegation, speed
from .accuracy import Scores
from .memory import peak_memory_mb
from .timing import REPORT_REPEATS, measure_latency, measure_ratio, runtime_of

FLOAT = "keras-float"
log = logging.getLogger("edgetransfer")


@dataclass(frozen=True)
class MeasureRequest:
    """What to measure of one file on one target, and how hard: one record instead of sixteen keywords.

    The defaults are ``check``'s (``cli/check.py`` takes its option defaults and help from these fields).

    Attributes:
        budget_s: seconds of timed runs per (file, runtime) in each repeat.
        repeats: latency repeats at least; ``max_repeats``: at most, while the t-interval straddles a budget.
        latency_budget_ms / ratio_budget: repeat until the t-interval is clear of these.
        reference: also measure p50(file)/p50(reference) per repeat (``--max-latency-ratio``).
        latency: time the file at all; ``peak_memory``: measure the peak memory it adds to a fresh process.
        p90_samples: p90s measured elsewhere (bench JSON of this file) instead of measuring here.
        settings: ``{runtime: settings}`` to load the host runtimes with (tuned, recorded or bf16);
            the winner's are recorded (``Measurement.settings``).
        profile: per-op profiles too (:func:`edgetransfer.evaluation.speed.profiles_for`).
        execution / tuning: recorded as given (``bf16``; ``validate --tune``'s summary).
    """

    budget_s: float = field(
        default=1.0,
        metadata={"cli": {"flag": "--budget-s", "unit": "seconds", "help": "Seconds of timed runs per repeat."}},
    )
    repeats: int = field(
        default=REPORT_REPEATS,
        metadata={"cli": {"flag": "--repeats", "unit": "count", "help": "Minimum latency repeats."}},
    )
    max_repeats: int | None = field(default=8, metadata={"cli": {"flag": "--max-repeats", "unit": "count"}})
    latency_budget_ms: float | None = None
    reference: ExportedArtifact | None = None
    ratio_budget: float | None = None
    latency: bool = True
    peak_memory: bool = False
    p90_samples: tuple[float, ...] | None = None
    settings: Mapping[str, Mapping] | None = None
    profile: bool = False
    execution: str = ""
    tuning: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ConfigError(f"a measurement budget of {self.budget_s} s", fix="give a positive number of seconds")
        if self.repeats < 1 or (self.max_repeats is not None and self.max_repeats < 1):
            raise ConfigError(
                f"repeats {self.repeats}, at most {self.max_repeats}", fix="give at least 1 repeat (--min-repeats)"
            )


def measure(
    art: ExportedArtifact, target, request: MeasureRequest = MeasureRequest(), scores: Scores | None = None
) -> Measurement:
    """Everything ``request`` asks of ``art`` on ``target``, measured once, as a record.

    ``scores``: the file's accuracy figures, computed by the :class:`~edgetransfer.evaluation.accuracy.Evaluator`
    (once per file and runtime kind, shared by the targets that score in it), or ``None`` for none.
    """
    rt = runtime_of(target)
    rt.require_supported(art.path)
    lat: latency.Latency | None = None
    p90s: tuple[float, ...] = ()
    if request.p90_samples is not None:  # p90s measured elsewhere (bench JSON): they are the figure
        p90s = tuple(request.p90_samples)
        mid = float(np.median(p90s))
        lat = latency.Latency(
            mid, mid, mid, float(np.mean(p90s)), 0.0, 0, latency.MEASURED, detail={"source": "latency samples"}
        )
    elif request.latency:
        lat, p90s = measure_latency(
            art,
            target,
            budget_s=request.budget_s,
            repeats=request.repeats,
            max_repeats=request.max_repeats,
            budget_ms=request.latency_budget_ms,
            settings=_plain(request.settings),
        )
    ratios: tuple[float, ...] = ()
    if request.reference is not None:
        ratios = measure_ratio(
            art,
            request.reference,
            target,
            budget_s=request.budget_s,
            repeats=request.repeats,
            max_repeats=request.max_repeats,
            max_ratio=request.ratio_budget,
        )
    peak = None
    if request.peak_memory:
        on_device_peak = lat.peak_memory_mb if lat is not None and lat.provenance == latency.ON_DEVICE else None
        if on_device_peak is not None:
            peak = on_device_peak
        elif target.measure == MeasureMode.HOST and rt.measures_latency_here:
            peak = peak_memory_mb(art, target)
    ran = list(lat.detail.get("runtimes") or {}) if lat is not None else []
    used = (request.settings or {}).get(lat.detail.get("runtime", "")) if lat is not None else None
    asked = _plain(request.settings) or {}
    profiles = speed.profiles_for(art, target, {n: asked.get(n, {}) for n in ran}) if request.profile else ()
    comp = None
    if target.delegate is not None:
        comp = compat.for_artifact(art.path, target.delegate, art.precision).to_json()
    observed = delegation.observe(art, target, lat)
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
        accuracy_by=scores.by if scores else "",
        device_accuracy=scores.device if scores else None,
        p90_repeats=p90s,
        ratio_reference=str(request.reference.path) if request.reference is not None else "",
        ratio_repeats=ratios,
        compatibility=comp,
        memory=rt.measure_memory(art.path, art.size_bytes, target),
        peak_memory_mb=peak,
        settings=dict(used or {}),
        execution=request.execution,
        profiles=profiles,
        tuning=dict(request.tuning),
        delegation=observed,
    )


def _plain(settings: Mapping[str, Mapping] | None) -> dict[str, dict] | None:
    return {k: dict(v) for k, v in settings.items()} if settings is not None else None


def save(report: ValidationReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically), for ``check --from-report`` or a CI job to start from."""
    return write_json(path, report.to_json())


def load_report(path: str | Path) -> ValidationReport:
    """A ``validation.json`` written by ``validate``; another document or an older schema is refused naming it."""
    return ValidationReport.read(path)
