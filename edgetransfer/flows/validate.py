"""The ``validate`` flow: files x targets, each pair measured once by the evaluator.

Also the findings (collapses, partial delegation, memory) and the best file per target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import gate, progress
from .. import targets as targets_lib
from ..errors import DataError, UnsupportedError
from ..evaluation import delegation, speed
from ..evaluation.accuracy import Evaluator, Scores, accuracy_kind
from ..evaluation.evaluator import FLOAT, MeasureRequest, measure
from ..evaluation.timing import REPORT_REPEATS, host_runtimes, runtime_of
from ..io import require_writable
from ..memo import Memo
from ..records.export import ExportedArtifact
from ..records.measure import Measurement, ValidationReport
from ..records.vocab import Precision
from ..runtime import isolate, latency

log = logging.getLogger("edgetransfer")
# An int8 file this far below the float model has collapsed rather than lost a little:
# typical post-training int8 costs 0-2 points on ImageNet-scale models (TFLite model
# optimization guide table); 10 points means the calibration or a layer is broken.
COLLAPSE_POINTS = 10.0


def _artifacts(paths: Sequence[str | Path]) -> list[ExportedArtifact]:
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise DataError("artifact not found", path=p, fix="pass files written by `edgetransfer export`")
        out.append(ExportedArtifact.from_manifest(p))
    return out


def _pairs(arts, tgts, skip_incompatible: bool) -> list:
    pairs = [(a, t) for a in arts for t in tgts]
    bad = [(a, t, t.can_run(a.format, a.precision)) for a, t in pairs if t.can_run(a.format, a.precision)]
    if bad and not skip_incompatible:
        a, t, why = bad[0]
        raise UnsupportedError(
            f"{a.path.name} cannot run on target {t.name}: {why}",
            fix=f"export a {'/'.join(t.precisions)} {'/'.join(t.formats)} file for {t.name}, "
            "or pass --skip-incompatible",
        )
    pairs = [(a, t) for a, t in pairs if not t.can_run(a.format, a.precision)]
    for a, t in pairs:  # an op the target's runtime lacks is refused before anything runs (exit 2)
        runtime_of(t).require_supported(a.path)
    return pairs


def validate(
    artifacts: Sequence[str | Path],
    data_dir: str | Path | None = None,
    target_names: Sequence[str] = ("host-cpu",),
    *,
    targets_dir: str | Path | None = None,
    budget_s: float = 2.0,
    skip_incompatible: bool = False,
    report_path: str | Path | None = None,
    memo: Memo | None = None,
    on_measure: Callable[[Measurement], None] | None = None,
    options: speed.SpeedOptions | None = None,
) -> ValidationReport:
    """Accuracy, agreement and latency of ``artifacts`` on ``target_names``, each measured once.

    Args:
        data_dir: held-out images; default the run's own held-out split.
        budget_s: seconds of timed runs per (file, runtime), split over :data:`REPORT_REPEATS` repeats.
        report_path: checked for writability before any work (written by the caller).
        memo: reuse predictions made before by the same model or file on the same images
            (:mod:`edgetransfer.memo`; the sweep passes one). Latency is measured every time.
        on_measure: called with each measurement as it is made (progress).
        options: per-op profiles, tuned runtime settings, bf16 execution, or settings recorded
            earlier (:class:`edgetransfer.evaluation.speed.SpeedOptions`).

    Raises:
        UnsupportedError: an artifact a target cannot run (unless ``skip_incompatible``).
        DataError: data or artifacts unusable. RuntimeBackendError: a runtime or runner failed.
    """
    if report_path is not None:
        require_writable(report_path, "report")
    arts = _artifacts(artifacts)
    tgts = [targets_lib.get(t, targets_dir) for t in target_names]
    for a in arts:  # native runtimes on files we did not just write: load them in a child first
        isolate.probe(a.path)
    pairs = _pairs(arts, tgts, skip_incompatible)
    _note_options(options or speed.SpeedOptions(), tgts)
    ev = Evaluator(arts[0].run(), data_dir, memo=memo, stored=arts[0].path)
    log.info("evaluating on %s", ev.held.describe())
    return _evaluate(arts, pairs, ev, budget_s, on_measure, options or speed.SpeedOptions())


def _note_options(opts: speed.SpeedOptions, tgts) -> None:
    """Say which asked-for extras a target or this CPU cannot give, instead of leaving them out silently."""
    for t in tgts:
        if (opts.tune or opts.bf16) and not speed.host_target(t):
            log.warning("note: %s is not timed on this host: --tune/--bf16 apply to host targets only", t.name)
    if opts.bf16 and not speed.bf16_units():
        log.warning(
            "note: --bf16: this CPU has no bf16 units (avx512_bf16 / amx_bf16 in /proc/cpuinfo): nothing to run"
        )


def _measure_pair(a, t, scored: Scores, budget_s: float, opts: speed.SpeedOptions) -> Measurement:
    """One (file, target): with the recorded settings (``--settings-from``), else tuned ones (``--tune``)."""
    settings: dict[str, dict] | None = None
    tuning: dict = {}
    if opts.pinned is not None and speed.host_target(t):
        settings = speed.require_pinned(opts.pinned, a, t.name, "--settings-from")
    elif opts.tune and speed.host_target(t):
        names = [r.name for r in host_runtimes(a, t)]
        with progress.stage(f"tuning {a.path.name} on {', '.join(names)}", done=False):
            settings, tuning = speed.tune_host(a, t, names, opts.tune_budget_s)
        settings = {n: settings.get(n, {}) for n in names}  # a runtime that could not be tuned keeps its defaults
    request = MeasureRequest(
        budget_s=budget_s, repeats=REPORT_REPEATS, settings=settings, profile=opts.profile, tuning=tuning
    )
    return measure(a, t, request, scored)


def _bf16_pairs(a, t, base: Measurement, opts: speed.SpeedOptions) -> list[tuple[str, dict]]:
    """``(runtime, settings)`` to run fp32 file ``a`` in bf16 on host target ``t`` (``--bf16``), on top of the
    settings its fp32 measurement used on that runtime (tuned or recorded)."""
    if not opts.bf16 or not speed.host_target(t) or a.precision != Precision.FP32:
        return []
    names = speed.bf16_runtimes([r.name for r in host_runtimes(a, t)])
    return [(n, speed.bf16_settings(n, base.settings if base.runtime == n else {})) for n in names]


def _evaluate(arts, pairs, ev: Evaluator, budget_s: float, on_measure, opts: speed.SpeedOptions) -> ValidationReport:
    run, n = ev.run, ev.n_classes
    reference = ev.reference(budget_s)
    ref_acc = reference.accuracy if reference is not None else None
    confusion: dict[str, tuple] = {}
    ref_scores = ev.reference_scores()
    if ref_scores is not None:
        confusion[FLOAT] = ref_scores.confusion
    scored: dict[tuple[Path, str], Scores] = {}
    records = []
    for a, t in progress.iterate(pairs, "files measured"):
        kind = accuracy_kind(a, t)
        if (a.path, kind) not in scored:
            s, conf = ev.scores(a, t)
            scored[(a.path, kind)] = s
            confusion[a.path.name + ("" if kind == "default" else f" ({kind})")] = conf
        m = _measure_pair(a, t, scored[(a.path, kind)], budget_s / REPORT_REPEATS, opts)
        extra = []
        for name, s16 in _bf16_pairs(a, t, m, opts):  # bf16 execution of the fp32 file, same runtime
            acc16, _ = ev.scores(a, t, execution=(name, s16))
            request = MeasureRequest(
                budget_s=budget_s / REPORT_REPEATS,
                repeats=REPORT_REPEATS,
                settings={name: s16},
                profile=opts.profile,
                execution="bf16",
            )
            extra.append(measure(a, t, request, acc16))
        records += [m, *extra]
        log.info(
            "%s on %s: accuracy %s, drop %s points, p50 %s (%s)",
            a.path.name,
            t.name,
            f"{m.accuracy:.4f}" if m.accuracy is not None else "-",
            f"{m.accuracy_drop:+.2f}" if m.accuracy_drop is not None else "-",
            f"{m.latency.p50:.2f} ms" if m.latency else "-",
            m.provenance or "not timed",
        )
        if on_measure is not None:
            on_measure(m)
    findings = _target_findings(records) + [f for a, t in pairs for f in delegation.isa_findings(a, t)]
    default = {p: s for (p, kind), s in scored.items() if kind == "default"}
    if ref_acc is not None:
        findings += _quality_findings([a for a in arts if a.path in default], default, ref_acc, n)
    else:
        findings.append("no float model in this run (imported from an exported file): accuracy without a drop")
    return ValidationReport(
        held_out=ev.held.to_json(),
        reference=reference,
        records=tuple(records),
        best=gate.best_per_target(records, {t.name: t for _, t in pairs}),
        findings=tuple(findings),
        classes=tuple(run.classes),
        confusion=confusion,
        host=latency.host_info(),
        targets={t.name: t.path for _, t in pairs},
    )


def _target_findings(records: Sequence[Measurement]) -> list[str]:
    """Partial delegation and files that do not fit a microcontroller."""
    out = []
    for m in records:
        c, name = m.compatibility, Path(m.artifact).name
        if c is not None and not c.get("full", True):
            fallback = ", ".join(sorted(set(c.get("fallback_ops") or ()))) or "all"
            out.append(
                f"{name} on {m.target}: only {c['ops_delegated']}/{c['ops_total']} ops "
                f"({100 * c['macs_share']:.0f}% of MACs) on {c['delegate']}, {c['partitions']} partition(s); "
                f"falls back: {fallback}. {c.get('note', '')}".strip()
            )
        out += delegation.findings(m)
        mem = m.memory
        if mem is not None and not mem["fits"]:
            out.append(
                f"{name} does not fit {m.target}: arena {mem['arena_bytes']:,} B (RAM budget "
                f"{mem['ram_budget_bytes']:,} B), flash {mem['flash_bytes']:,} B (budget "
                f"{mem['flash_budget_bytes']:,} B)"
            )
    return out


def _quality_findings(arts, acc: dict, ref_acc: float, n_classes: int) -> list[str]:
    """Accuracy collapses and degenerate calibrations, with the fix."""
    out = []
    for a in arts:
        got = acc[a.path].accuracy
        drop = 100 * (ref_acc - got)
        cal = a.manifest.calibration or {}
        if drop >= COLLAPSE_POINTS:
            out.append(
                f"{a.path.name}: accuracy collapsed by {drop:.1f} points against the float model "
                f"({got:.3f} vs {ref_acc:.3f}; chance is {1 / n_classes:.3f}). Fix: calibrate on "
                "100-500 representative images (--calibration-size), or let `edgetransfer export "
                "--max-accuracy-drop` search for a recipe that keeps the accuracy."
            )
        if cal and int(cal.get("count", 0)) < 10:
            out.append(
                f"{a.path.name}: calibrated on only {cal.get('count')} image(s) ({cal.get('source')}); "
                "int8 ranges from so few images are unreliable."
            )
    return out
