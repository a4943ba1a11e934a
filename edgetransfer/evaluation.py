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

import dataclasses
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import compat, graphops, latency, metrics, progress, speed, stats
from . import device_accuracy as device_lib
from . import memo as memo_lib
from . import targets as targets_lib
from .errors import DataError, RuntimeBackendError, UnsupportedError
from .exporter import ExportedArtifact
from .io import require_writable, write_json
from .memo import Memo
from .records import DEFAULT_PICK_ACCURACY_DROP
from .records.device import DeviceAccuracy
from .records.measure import Best, Measurement, Reference, ValidationReport
from .records.vocab import MeasureMode, Precision
from .runtime import isolate, load_session
from .runtime import spec as runtime_spec
from .scoring import Adapted, HeldOut, held_out, predict, probe_batch, reference_probs
from .training import TrainedModel

__all__ = [
    "FLOAT",
    "HeldOut",
    "Measurement",
    "ValidationReport",
    "held_out",
    "measure",
    "measure_latency",
    "predict",
    "probe_batch",
    "reference_probs",
    "save",
    "validate",
]

FLOAT = "keras-float"
log = logging.getLogger("edgetransfer")
# An int8 file this far below the float model has collapsed rather than lost a little:
# typical post-training int8 costs 0-2 points on ImageNet-scale models (TFLite model
# optimization guide table); 10 points means the calibration or a layer is broken.
COLLAPSE_POINTS = 10.0
# validate's figure per (file, runtime) is split into this many repeats, so a report carries the
# p90s the CI gate's t-interval needs (the live check makes at least as many).
REPORT_REPEATS = 3


@dataclass(frozen=True)
class Scores:
    """Accuracy of one file in one runtime kind against the float model's predictions."""

    accuracy: float
    agreement: float | None
    drop: float | None  # points below the float model
    per_class: tuple[float | None, ...]
    split: str
    by: str = ""  # who produced the accuracy: "litert, host" or the device's label
    device: DeviceAccuracy | None = None  # the device's run against this host's (runner targets)


def runtime_of(target) -> runtime_spec.RuntimeSpec:
    return runtime_spec.get(target.runtime)


def _accuracy_runtime(art: ExportedArtifact, target) -> runtime_spec.RuntimeSpec | None:
    """The runtime accuracy is scored in on ``target``: its own (TFLM kernels) or, ``None``, the file's default."""
    rt = runtime_of(target)
    return rt if rt.own_accuracy else None


def _session(path: Path, rt: runtime_spec.RuntimeSpec | None):
    return rt.runtime().load(path) if rt is not None else load_session(path)


def on_device(target, art: ExportedArtifact) -> latency.Latency:
    """Latency measured on the device by the profile's runner (ssh / adb / command), labelled
    ``on-device`` and carrying the device's identity (``uname -a`` / ``getprop ro.product.model``)."""
    targets_lib.require_command_allowed(target)
    res = target.runner.run(Path(art.path), target.threads)
    lat = res.latency
    host = {**lat.host, "device": res.device, "runner": res.kind, "command": " ".join(res.command)}
    return dataclasses.replace(lat, provenance=latency.ON_DEVICE, host=host)


def _host_runtimes(art: ExportedArtifact, target) -> list:
    from .runtime import available_runtimes, get_runtime

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
    runtimes = _host_runtimes(art, target)
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


_PEAK_CHILD = """
import re, sys
import numpy as np
from edgetransfer.runtime import load_session

def kb(field):
    with open("/proc/self/status") as fh:
        return int(re.search(field + r":\\s+(\\d+)", fh.read()).group(1))

before = kb("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM (the peak) to the current RSS: proc(5), /proc/pid/clear_refs
except OSError:
    before = kb("VmHWM")  # cannot reset: what the run adds above the imports' own peak
session = load_session(sys.argv[1], int(sys.argv[2]) if sys.argv[2] else None)
batch = np.random.default_rng(0).uniform(0, 255, (1, int(sys.argv[3]), int(sys.argv[3]), 3)).astype(np.float32)
for _ in range(5):
    session.run(batch)
print((kb("VmHWM") - before) / 1024)
"""


def peak_memory_mb(art: ExportedArtifact, target, *, timeout_s: float = 120) -> float:
    """Peak resident memory that loading and running ``art`` adds to a fresh Python process, in MB:
    the runtime's own libraries, the weights and the arena (Linux: the peak is reset through
    ``/proc/self/clear_refs`` after the imports, then read as ``VmHWM``)."""
    args = [sys.executable, "-c", _PEAK_CHILD, str(art.path), str(target.threads or ""), str(art.io.size)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeBackendError(
            f"measuring peak memory took over {timeout_s:.0f} s", path=art.path, fix="check the file runs with bench"
        ) from None
    try:
        return round(float(out.stdout.strip().splitlines()[-1]), 2)
    except (ValueError, IndexError):
        raise RuntimeBackendError(
            f"measuring peak memory failed: {(out.stderr or out.stdout).strip()[-300:]}",
            path=art.path,
            fix="run `python -m edgetransfer.runtime bench` on the file to see why",
        ) from None


def score(
    art: ExportedArtifact,
    target,
    ho: HeldOut,
    n_classes: int,
    ref: np.ndarray | None,
    ref_acc: float | None,
    memo: Memo | None = None,
    images: str = "",
    execution: tuple[str, dict] | None = None,
) -> tuple[Scores, tuple]:
    """Accuracy of ``art`` on ``ho`` in the runtime ``target`` scores it in, against the float
    model's predictions ``ref`` (accuracy ``ref_acc``); ``images``: the digest of ``ho.x`` if known.
    ``execution``: ``(runtime, settings)`` to score in instead (bf16 execution on the same runtime)."""
    rt = _accuracy_runtime(art, target)
    kind = rt.name if rt is not None else "default"
    if execution is not None:
        kind = f"{execution[0]} {sorted(execution[1].items())}"
    if memo is not None and not images:
        images = memo_lib.digest(ho.x)
    key = memo_lib.digest("predict", art.sha256, kind, images) if memo is not None else ""
    probs = memo.get_array("predictions", key) if memo is not None else None
    if probs is None:
        if execution is not None:
            threads, own = speed.load_args(execution[1], None)
            session = runtime_spec.get(execution[0]).runtime().load(art.path, threads, own)
        else:
            session = _session(art.path, rt)
        probs = predict(Adapted(session, art.metadata.get("imported")), ho.x, str(art.path))
        if memo is not None:
            memo.put_array("predictions", key, probs)
    s = metrics.scores(probs, ho.y, n_classes, str(art.path))
    agree = metrics.agreement(probs, ref) if ref is not None else None
    drop = round(100 * (ref_acc - s.accuracy), 3) if ref_acc is not None else None
    by = f"{execution[0]}, host" if execution is not None else device_lib.host_label(art, target)
    return Scores(s.accuracy, agree, drop, tuple(s.per_class), ho.describe(), by), s.confusion


def device_score(
    art: ExportedArtifact, target, ho: HeldOut, n_classes: int, ref: np.ndarray | None, ref_acc: float | None
) -> tuple[Scores, tuple]:
    """The DEVICE's accuracy of ``art`` on ``ho`` (``target``'s runner runs the images,
    :mod:`edgetransfer.device_accuracy`), with how it compares with this host's run of the same file."""
    with progress.stage(f"{art.path.name}: {len(ho.x)} held-out images on {target.name}'s device", done=False):
        probs, dev = device_lib.compare(art, target, ho.x, ho.y, n_classes)
    s = metrics.scores(probs, ho.y, n_classes, f"{art.path.name} on {target.name}")
    agree = metrics.agreement(probs, ref) if ref is not None else None
    drop = round(100 * (ref_acc - s.accuracy), 3) if ref_acc is not None else None
    return Scores(s.accuracy, agree, drop, tuple(s.per_class), ho.describe(), dev.label, dev), s.confusion


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
        profile: per-op profiles too (:func:`edgetransfer.speed.profiles_for`).
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
        accuracy_by=scores.by if scores else "",
        device_accuracy=scores.device if scores else None,
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


def accuracy_kind(art: ExportedArtifact, target) -> str:
    """Which runtime's accuracy a target reports: its own (TFLM) or the file's default."""
    rt = _accuracy_runtime(art, target)
    return rt.name if rt is not None else "default"


class _KerasSession:
    """The float model as a traced ``tf.function``: eager calls would add ~100 ms of Python
    overhead per image and make every exported file look faster than it is."""

    def __init__(self, model):
        from . import _lazy

        tf = _lazy.tf()
        self.fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def run(self, batch):
        return self.fn(batch).numpy()


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
            earlier (:class:`edgetransfer.speed.SpeedOptions`).

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
    run = arts[0].run()
    ho = held_out(run, data_dir)
    log.info("evaluating on %s", ho.describe())
    return _evaluate(arts, pairs, run, ho, budget_s, memo, on_measure, options or speed.SpeedOptions())


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
        names = [r.name for r in _host_runtimes(a, t)]
        with progress.stage(f"tuning {a.path.name} on {', '.join(names)}", done=False):
            settings, tuning = speed.tune_host(a, t, names, opts.tune_budget_s)
        settings = {n: settings.get(n, {}) for n in names}  # a runtime that could not be tuned keeps its defaults
    return measure(a, t, scores=scored, budget_s=budget_s, settings=settings, profile=opts.profile, tuning=tuning)


def _bf16_pairs(a, t, base: Measurement, opts: speed.SpeedOptions) -> list[tuple[str, dict]]:
    """``(runtime, settings)`` to run fp32 file ``a`` in bf16 on host target ``t`` (``--bf16``), on top of the
    settings its fp32 measurement used on that runtime (tuned or recorded)."""
    if not opts.bf16 or not speed.host_target(t) or a.precision != Precision.FP32:
        return []
    names = speed.bf16_runtimes([r.name for r in _host_runtimes(a, t)])
    return [(n, speed.bf16_settings(n, base.settings if base.runtime == n else {})) for n in names]


def _evaluate(
    arts, pairs, run: TrainedModel, ho: HeldOut, budget_s: float, memo, on_measure, opts: speed.SpeedOptions
) -> ValidationReport:
    n = len(run.classes)
    images = memo_lib.digest(ho.x) if memo is not None else ""  # hashed once: ~90 MB at 224 px
    reference, ref = _reference(run, ho, budget_s, memo, images)
    ref_acc = reference.accuracy if reference is not None else None
    confusion: dict[str, tuple] = {}
    if ref is not None:
        confusion[FLOAT] = metrics.scores(ref, ho.y, n, str(run.model_path)).confusion
    scored: dict[tuple[Path, str], Scores] = {}
    records = []
    for a, t in progress.iterate(pairs, "files measured"):
        kind = accuracy_kind(a, t)
        if (a.path, kind) not in scored:
            s, conf = score(a, t, ho, n, ref, ref_acc, memo, images)
            scored[(a.path, kind)] = s
            confusion[a.path.name + ("" if kind == "default" else f" ({kind})")] = conf
        if device_lib.predicts(t):  # the device runs the images: its accuracy is the target's
            kind = f"device {t.name}"
            scored[(a.path, kind)], confusion[f"{a.path.name} ({t.name})"] = device_score(a, t, ho, n, ref, ref_acc)
        m = _measure_pair(a, t, scored[(a.path, kind)], budget_s / REPORT_REPEATS, opts)
        extra = []
        for name, s16 in _bf16_pairs(a, t, m, opts):  # bf16 execution of the fp32 file, same runtime
            acc16, _ = score(a, t, ho, n, ref, ref_acc, memo, images, execution=(name, s16))
            extra.append(
                measure(
                    a,
                    t,
                    scores=acc16,
                    budget_s=budget_s / REPORT_REPEATS,
                    settings={name: s16},
                    profile=opts.profile,
                    execution="bf16",
                )
            )
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
    findings = _target_findings(records)
    default = {p: s for (p, kind), s in scored.items() if kind == "default"}
    if ref_acc is not None:
        findings += _quality_findings([a for a in arts if a.path in default], default, ref_acc, n)
    else:
        findings.append("no float model in this run (imported from an exported file): accuracy without a drop")
    return ValidationReport(
        held_out=ho.to_json(),
        reference=reference,
        records=tuple(records),
        best=best_per_target(records, {t.name: t for _, t in pairs}),
        findings=tuple(findings),
        classes=tuple(run.classes),
        confusion=confusion,
        host=latency.host_info(),
        targets={t.name: t.path for _, t in pairs},
    )


def _reference(run: TrainedModel, ho: HeldOut, budget_s: float, memo, images: str):
    """(the float model's Reference, its probabilities), or (None, None) for a run with no Keras model."""
    if not run.has_float_model:
        return None, None
    with progress.stage("float model on the held-out images", done=False):
        ref, model = reference_probs(run, ho.x, memo, images)
    acc = metrics.scores(ref, ho.y, len(run.classes), str(run.model_path)).accuracy
    lat = latency.measure(lambda: _KerasSession(model), ho.x[:1], budget_s=budget_s, runtime_version="keras")
    return Reference(acc, str(run.model_path), lat), ref


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


def accuracy_for_check(art: ExportedArtifact, target, data_dir: str | Path | None) -> Scores:
    """The file's accuracy and drop against its run's float model on the held-out data (default
    the run's own split), scored in the runtime ``target`` scores it in."""
    run = art.run()
    ho = held_out(run, data_dir)
    n = len(run.classes)
    if not run.has_float_model:  # imported from a file: its own accuracy, no drop (the gate refuses a drop budget)
        if device_lib.predicts(target):
            return device_score(art, target, ho, n, None, None)[0]
        return score(art, target, ho, n, None, None)[0]
    ref, _ = reference_probs(run, ho.x)
    ref_acc = metrics.scores(ref, ho.y, n, str(run.model_path)).accuracy
    if device_lib.predicts(target):
        return device_score(art, target, ho, n, ref, ref_acc)[0]
    return score(art, target, ho, n, ref, ref_acc)[0]


def has_held_out(art: ExportedArtifact, data_dir: str | Path | None) -> bool:
    """Whether held-out data can be had: ``data_dir`` given, or the run's own data folder still there."""
    if data_dir is not None:
        return True
    try:
        return Path(art.run().manifest.data.root).is_dir()
    except Exception:  # noqa: BLE001 - a run that cannot be read has no held-out data either
        return False


def save(report: ValidationReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically), for ``check --from-report`` or a CI job to start from."""
    return write_json(path, report.to_json())


def load_report(path: str | Path) -> ValidationReport:
    """A ``validation.json`` written by ``validate``; another document or an older schema is refused naming it."""
    return ValidationReport.read(path)
