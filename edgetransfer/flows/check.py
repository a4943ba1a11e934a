"""The live CI check: measure an artifact on a target (:func:`edgetransfer.evaluation.measure`),
then judge it (:func:`edgetransfer.gate.judge`). ``check --from-report`` is
:func:`judge_report`: the second half alone."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from .. import evaluation, gate
from .. import targets as targets_lib
from ..errors import ConfigError
from ..evaluation import accuracy, delegation, speed
from ..evaluation import device_results as device_results_lib
from ..evaluation.evaluator import MeasureRequest
from ..io import sha256_file
from ..records import Budget
from ..records.export import ExportedArtifact
from ..records.measure import ValidationReport, Verdict
from ..runtime import isolate

log = logging.getLogger("edgetransfer")


def check(
    artifact: str | Path,
    target_name: str,
    *,
    data_dir=None,
    budget: Budget | None = None,
    reference: str | Path | None = None,
    latency_samples: Sequence[dict] | None = None,
    targets_dir=None,
    budget_s: float = 1.0,
    min_repeats: int = 3,
    max_repeats: int = 8,
    pipeline_budget: Budget | None = None,
    settings_from: str | Path | None = None,
    profile: bool = False,
    device_results: Sequence[str | Path] = (),
    device_name: str | None = None,
) -> Verdict:
    """Measure what ``target``'s budgets need (profile < ``pipeline_budget`` < ``budget``), then judge.

    The profile's accuracy budget applies whenever held-out data can be had (``data_dir`` or the
    run's own split); an explicit one always does. Every file, the reference included, is first
    loaded in a child process (:func:`edgetransfer.runtime.isolate.probe`). ``settings_from``: a
    ``validation.json`` whose recorded runtime settings for this file and target (``validate --tune``)
    the runtime is loaded with again, so the check reproduces the validated figure. ``profile``: the
    per-op profiles of the runtimes timed for the latency budget ride along in the verdict.
    ``device_results``: benchmark results of this file measured on a device
    (:mod:`edgetransfer.evaluation.device_results`, ``device_name`` naming it): their latency is judged
    instead of measuring any.
    """
    art = ExportedArtifact.from_manifest(artifact)
    target = targets_lib.get(target_name, targets_dir)
    isolate.probe(art.path)  # a file from anywhere: load it in a child before this process does
    ref_art = ExportedArtifact.from_manifest(reference) if reference is not None else None
    if ref_art is not None:
        isolate.probe(ref_art.path)
    targets_lib.require_runnable(target, art.format, art.precision, Path(art.path).name)
    has_data = accuracy.has_held_out(art, data_dir)
    b = gate.budget_for(target, pipeline_budget, budget, accuracy=has_data)
    if not has_data and target.budgets.accuracy_drop is not None:
        log.warning(
            "warning: %s's accuracy budget is not checked: the run's held-out data is not here (pass --data DIR)",
            target.name,
        )
    samples = (
        gate.validate_samples(latency_samples, art.sha256, art.path.name) if latency_samples is not None else None
    )
    results = device_results_lib.read_for(device_results, art.path, art.size_bytes, device_name)
    settings = None
    if settings_from is not None:
        if not speed.host_target(target):
            raise ConfigError(
                f"--settings-from applies to host targets; {target.name} is measured on {target.measure}",
                path=settings_from,
                fix="drop --settings-from for this target",
            )
        settings = speed.require_pinned(speed.pinned_settings(settings_from), art, target.name, settings_from)
    wants_scores = b.accuracy_drop is not None or b.disagreement is not None
    ev = accuracy.Evaluator(art.run(), data_dir, stored=art.path)  # the export's reference: no TensorFlow
    scores = ev.scores(art, target)[0] if wants_scores else None
    request = MeasureRequest(
        budget_s=budget_s,
        repeats=min_repeats,
        max_repeats=max_repeats,
        latency_budget_ms=b.latency_p90_ms,
        reference=ref_art if b.latency_ratio is not None else None,
        ratio_budget=b.latency_ratio,
        latency=b.latency_p90_ms is not None and samples is None and not results,
        peak_memory=b.peak_memory_mb is not None,
        p90_samples=tuple(samples) if samples is not None else None,
        settings=settings,
        profile=profile,
    )
    m = evaluation.measure(art, target, request, scores)
    if results:  # the device's word on delegation, not this host's (None: the static prediction is judged)
        m = dataclasses.replace(m, delegation=delegation.from_device(results))
    notes = delegation.isa_findings(art, target) + (delegation.findings(m) if b.full_delegation is None else [])
    for finding in notes:
        log.warning("%s", finding)  # with --require-full-delegation the verdict says it
    if results:
        lat, repeats = device_results_lib.latency_of(results)
        m = dataclasses.replace(m, latency=lat, p90_repeats=repeats)
    return dataclasses.replace(gate.judge(m, b), profiles=m.profiles)


def judge_report(
    report_path: str | Path,
    target_name: str,
    *,
    budget: Budget | None = None,
    artifact: str | Path | None = None,
    targets_dir=None,
    pipeline_budget: Budget | None = None,
) -> list[Verdict]:
    """Judge a ``validation.json`` measured earlier (another CI job, a device farm): no model is
    loaded and no runtime imported; the same rule and numbers as the live check."""
    report = ValidationReport.read(report_path)
    target = targets_lib.get(target_name, targets_dir)
    name = str(artifact) if artifact is not None else None
    # the file at hand: the report's figures must be of THIS file, not one with the same name
    digest = sha256_file(artifact) if artifact is not None and Path(artifact).is_file() else None
    return gate.from_report(
        report, target, (pipeline_budget, budget), artifact=name, source=str(report_path), sha256=digest
    )
