"""Latency on the target's own path: this host's runtimes, the device's runner, or an estimate.

Repeats are pooled into one figure; the ratio to a reference file is measured here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import RuntimeBackendError
from ..exporter.formats import graphops
from ..gate import stats
from ..records.export import ExportedArtifact
from ..records.vocab import MeasureMode
from ..runtime import latency
from ..runtime import spec as runtime_spec
from . import speed
from .heldout import probe_batch

# validate's figure per (file, runtime) is split into this many repeats, so a report carries the
# p90s the CI gate's t-interval needs (the live check makes at least as many).
REPORT_REPEATS = 3


def runtime_of(target) -> runtime_spec.RuntimeSpec:
    return runtime_spec.get(target.runtime)


def on_device(target, art: ExportedArtifact) -> latency.Latency:
    """Latency measured on the device by the profile's runner (ssh / adb / command), labelled
    ``on-device`` and carrying the device's identity (``uname -a`` / ``getprop ro.product.model``)."""
    target.require_command_allowed()
    res = target.runner.run(Path(art.path), target.threads)
    lat = res.latency
    host = {**lat.host, "device": res.device, "runner": res.kind, "command": " ".join(res.command)}
    return dataclasses.replace(lat, provenance=latency.ON_DEVICE, host=host)


def host_runtimes(art: ExportedArtifact, target) -> list:
    from ..runtime import available_runtimes, get_runtime

    runtimes = [get_runtime(r.name, target.provider) for r in available_runtimes(art.path)]
    if target.provider != "cpu":  # a provider belongs to the runtimes that take it: measure those only
        runtimes = [r for r in runtimes if target.provider in runtime_spec.get(r.name).providers]
    return runtimes


def _host_once(art: ExportedArtifact, target, runtimes, budget_s: float, settings: dict) -> dict[str, latency.Latency]:
    """One timed measurement per runtime, each loaded with its ``settings`` (threads included) if any."""
    out = {}
    for rt in runtimes:
        threads, own = speed.load_args(settings.get(rt.name), target.threads)
        out[rt.name] = latency.measure(
            (lambda rt=rt, t=threads, s=own: rt.load(art.path, t, s))
            if own
            else (lambda rt=rt, t=threads: rt.load(art.path, t)),
            probe_batch(art.io.size),
            budget_s=budget_s,
            threads=threads,
            runtime_version=rt.version(),
        )
    return out


def pool(runs: Sequence[latency.Latency]) -> latency.Latency:
    """One figure from repeated measurements of the same file: percentiles over all samples."""
    if len(runs) == 1:
        return runs[0]
    samples = np.concatenate([np.asarray(r.samples, dtype=float) for r in runs])
    if samples.size == 0:
        return runs[0]
    p50, p90, p99 = (round(float(np.percentile(samples, q)), 4) for q in (50, 90, 99))
    loads = [r.load_ms for r in runs if r.load_ms is not None]
    mems = [r.peak_memory_mb for r in runs if r.peak_memory_mb is not None]
    return dataclasses.replace(
        runs[0],
        p50=p50,
        p90=p90,
        p99=p99,
        mean=round(float(samples.mean()), 4),
        std=round(float(samples.std()), 4),
        runs=int(samples.size),
        load_ms=round(float(np.mean(loads)), 2) if loads else None,
        peak_memory_mb=max(mems) if mems else None,
        samples=tuple(round(float(s), 4) for s in samples),
    )


def _keep_going(values: list[float], repeats: int, max_repeats: int, budget: float | None) -> bool:
    if len(values) < repeats:
        return True
    return budget is not None and len(values) < max_repeats and stats.decide(values, budget) == stats.INCONCLUSIVE


def measure_latency(
    art: ExportedArtifact,
    target,
    *,
    budget_s: float = 1.0,
    repeats: int = REPORT_REPEATS,
    max_repeats: int | None = None,
    budget_ms: float | None = None,
    settings: dict[str, dict] | None = None,
) -> tuple[latency.Latency, tuple[float, ...]]:
    """(latency, p90 of each repeat) of ``art`` on ``target``: the ONE place that picks host, runner or estimate.

    On the host every installed runtime that can run the file is measured in each repeat
    (``budget_s`` of timed runs each) and the one with the fastest pooled p50 reported, naming
    it (``detail["runtime"]``; all in ``detail["runtimes"]``). With ``budget_ms``, repeats go
    on past ``repeats`` (up to ``max_repeats``) while the t-interval straddles the budget.
    ``settings`` (``{runtime: settings}``, tuned or recorded): only those runtimes, loaded with them.
    """
    rt = runtime_of(target)
    if target.measure != MeasureMode.RUNNER and not rt.measures_latency_here:
        return rt.estimate_latency(art.path, target), ()
    if target.measure == MeasureMode.ESTIMATE:
        return latency.estimate(graphops.ops_for(art.path), target.device, art.precision), ()
    top = max_repeats or repeats
    if target.measure == MeasureMode.RUNNER:
        runs: list[latency.Latency] = []
        while _keep_going([r.p90 for r in runs], repeats, top, budget_ms):
            runs.append(on_device(target, art))
        return pool(runs), tuple(r.p90 for r in runs)
    runtimes = host_runtimes(art, target)
    if settings:
        runtimes = [r for r in runtimes if r.name in settings]
        if not runtimes:
            raise RuntimeBackendError(
                f"none of the runtimes the settings are for ({', '.join(settings)}) is installed",
                path=art.path,
                fix="install it, or measure without the recorded settings",
            )
    found: dict[str, list[latency.Latency]] = {rt.name: [] for rt in runtimes}
    best_p90s: list[float] = []
    while _keep_going(best_p90s, repeats, top, budget_ms):
        for name, lat in _host_once(art, target, runtimes, budget_s, settings or {}).items():
            found[name].append(lat)
        best_p90s = [r.p90 for r in found[min(found, key=lambda n: pool(found[n]).p50)]]
    pooled = {n: pool(v) for n, v in found.items()}
    name = min(pooled, key=lambda n: pooled[n].p50)
    best = pooled[name]
    detail = {
        **best.detail,
        "runtime": name,
        "runtimes": {
            n: {"p50": v.p50, "p90": v.p90, **({"settings": settings[n]} if settings else {})}
            for n, v in pooled.items()
        },
    }
    return dataclasses.replace(best, detail=detail), tuple(r.p90 for r in found[name])


def measure_ratio(
    art: ExportedArtifact,
    reference: ExportedArtifact,
    target,
    *,
    budget_s: float = 1.0,
    repeats: int = REPORT_REPEATS,
    max_repeats: int | None = None,
    max_ratio: float | None = None,
) -> tuple[float, ...]:
    """p50(art) / p50(reference) per repeat, the two measured one after the other on the
    target's own path (host, runner or estimate), so the ratio holds across machines."""
    values: list[float] = []
    top = max_repeats or repeats
    while _keep_going(values, repeats, top, max_ratio):
        a = measure_latency(art, target, budget_s=budget_s, repeats=1)[0].p50
        b = measure_latency(reference, target, budget_s=budget_s, repeats=1)[0].p50
        values.append(a / b)
        if target.measure == MeasureMode.ESTIMATE or not runtime_of(target).measures_latency_here:
            break  # an estimate is the same every time: one ratio says it all
    return tuple(values)
