"""The one evaluation path: held-out data of a run, predictions, scores, and latency of an
artifact on a target (measured here, measured on the device by its runner, or estimated:
chosen in :func:`latency_on` and nowhere else).

``validate`` (a report over artifacts x targets), ``check`` (the CI gate), training and the
benchmarks all call these functions. Never raises on a missed budget: budgets are judged by
:mod:`edgetransfer.gate`. It does raise on what cannot be validated at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import compat, graphops, latency, metrics
from . import memo as memo_lib
from . import targets as targets_lib
from .errors import DataError, UnsupportedError
from .exporter import ExportedArtifact
from .io import require_writable, write_json
from .memo import Memo
from .runtime import isolate, load_session
from .scoring import HeldOut, held_out, predict, probe_batch, reference_probs
from .training import TrainedModel

FLOAT = "keras-float"
log = logging.getLogger("edgetransfer")
# An int8 file this far below the float model has collapsed rather than lost a little:
# typical post-training int8 costs 0-2 points on ImageNet-scale models (TFLite model
# optimization guide table); 10 points means the calibration or a layer is broken.
COLLAPSE_POINTS = 10.0


def on_device(target, art: ExportedArtifact) -> latency.Latency:
    """Latency measured on the device by the profile's runner (ssh / adb / command), labelled
    ``on-device`` and carrying the device's identity (``uname -a`` / ``getprop ro.product.model``)."""
    targets_lib.require_command_allowed(target)
    res = target.runner.run(Path(art.path), target.threads)
    lat = res.latency
    host = {**lat.host, "device": res.device, "runner": res.kind, "command": " ".join(res.command)}
    return dataclasses.replace(lat, provenance=latency.ON_DEVICE, host=host)


def latency_on(art: ExportedArtifact, target, *, budget_s: float = 2.0, cache: dict | None = None) -> latency.Latency:
    """Latency of ``art`` on ``target``: the ONE place that picks host, runner or estimate.

    On the host every installed runtime that can run the file is measured (LiteRT; ONNX Runtime
    and OpenVINO for ONNX) and the fastest p50 is reported, naming its runtime
    (``detail["runtime"]``, all of them in ``detail["runtimes"]``).
    """
    if target.measure == "runner":
        return on_device(target, art)
    if target.runtime == "tflm":
        from .formats import tflm

        return tflm.estimate_latency(art.path, target)
    if target.measure == "estimate":
        return latency.estimate(graphops.ops_for(art.path), target.device, art.precision)
    key = (art.path, target.threads, target.provider)
    if cache is not None and key in cache:
        cached: latency.Latency = cache[key]
        return cached
    lat = _fastest_on_host(art, target, budget_s)
    if cache is not None:
        cache[key] = lat
    return lat


def _fastest_on_host(art: ExportedArtifact, target, budget_s: float) -> latency.Latency:
    from .runtime import available_runtimes, get_runtime

    runtimes = [get_runtime(r.name, target.provider) for r in available_runtimes(art.path)]
    if target.provider != "cpu":  # a provider is ONNX Runtime's: measure that runtime only
        runtimes = [r for r in runtimes if r.name == "onnxruntime"]
    found: dict[str, latency.Latency] = {}
    for rt in runtimes:
        found[rt.name] = latency.measure(
            lambda rt=rt: rt.load(art.path, target.threads),
            probe_batch(art.io.size),
            budget_s=budget_s,
            threads=target.threads,
            runtime_version=rt.version(),
        )
    name = min(found, key=lambda n: found[n].p50)
    best = found[name]
    detail = {**best.detail, "runtime": name, "runtimes": {n: {"p50": v.p50, "p90": v.p90} for n, v in found.items()}}
    return dataclasses.replace(best, detail=detail)


def tflm_memory(art: ExportedArtifact, target) -> dict:
    """RAM (the TFLM arena, measured by the real interpreter) and flash (the model's bytes) on an MCU."""
    from .formats import tflm

    tflm.check_tflm(art.path.read_bytes(), path=art.path)
    return tflm.fits(tflm.measure_arena(art.path), art.size_bytes, target)


@dataclass(frozen=True)
class Record:
    """One artifact on one target."""

    artifact: str
    format: str
    precision: str
    target: str
    accuracy: float
    agreement: float | None
    accuracy_drop: float | None  # points below the float model
    per_class_accuracy: tuple[float | None, ...]
    size_bytes: int
    latency: latency.Latency
    compatibility: dict | None = None
    target_source: str = ""
    memory: dict | None = None  # tflm targets: arena (RAM) and flash bytes, and whether they fit

    def to_json(self, samples: bool = False) -> dict:
        lat = self.latency
        return {
            "artifact": self.artifact,
            "format": self.format,
            "precision": self.precision,
            "target": self.target,
            "target_profile": self.target_source,
            "accuracy": self.accuracy,
            "agreement": self.agreement,
            "accuracy_drop": self.accuracy_drop,
            "per_class_accuracy": list(self.per_class_accuracy),
            "size_bytes": self.size_bytes,
            "latency_ms": {
                "p50": lat.p50,
                "p90": lat.p90,
                "p99": lat.p99,
                "mean": lat.mean,
                "std": lat.std,
                "runs": lat.runs,
            },
            "provenance": lat.provenance,
            "runtime": lat.detail.get("runtime"),
            "latency": lat.to_json(samples),
            "compatibility": self.compatibility,
            "memory": self.memory,
        }


@dataclass(frozen=True)
class Reference:
    """The float Keras model on the same held-out data and host."""

    accuracy: float
    latency: latency.Latency
    model: str

    def to_json(self) -> dict:
        lat = self.latency
        return {
            "accuracy": self.accuracy,
            "model": self.model,
            "latency": lat.to_json(samples=True),
            "latency_ms": {"p50": lat.p50, "p90": lat.p90, "p99": lat.p99},
        }


@dataclass(frozen=True)
class Best:
    """Per target: the fastest artifact within the target's accuracy budget."""

    artifact: str
    p50_ms: float
    provenance: str
    accuracy: float
    runtime: str | None = None  # on the host: the fastest runtime for that file

    def to_json(self) -> dict:
        return {
            "artifact": self.artifact,
            "runtime": self.runtime,
            "p50_ms": self.p50_ms,
            "provenance": self.provenance,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class ValidationReport:
    records: tuple[Record, ...]
    reference: Reference
    best: dict[str, Best]
    findings: tuple[str, ...]
    classes: tuple[str, ...]
    confusion: dict[str, tuple]  # artifact name (or keras-float) -> matrix
    held_out: dict
    host: dict = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # name -> profile file

    @property
    def data(self) -> str:
        return str(self.held_out.get("source", ""))

    def to_json(self, samples: bool = False) -> dict:
        return {
            "kind": "edgetransfer.validation",
            "schema": 2,
            "held_out": self.held_out,
            "reference": self.reference.to_json(),
            "records": [r.to_json(samples) for r in self.records],
            "best": {t: b.to_json() for t, b in self.best.items()},
            "findings": list(self.findings),
            "classes": list(self.classes),
            "confusion": {k: [list(r) for r in v] for k, v in self.confusion.items()},
            "data": self.data,
            "host": self.host,
            "targets": self.targets,
        }


def _artifacts(paths: Sequence[str | Path]) -> list[ExportedArtifact]:
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise DataError("artifact not found", path=p, fix="pass files written by `edgetransfer export`")
        out.append(ExportedArtifact.from_manifest(p))
    return out


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
) -> ValidationReport:
    """Accuracy, agreement and latency of ``artifacts`` on ``target_names``.

    Args:
        data_dir: held-out images; default the run's own held-out split.
        report_path: checked for writability before any work (written by the caller).
        memo: reuse predictions made before by the same model or file on the same images
            (:mod:`edgetransfer.memo`; the sweep passes one). Latency is measured every time.

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
    for a, t in pairs:
        if t.runtime == "tflm":  # an op TFLM lacks is refused before anything runs (exit 2)
            from .formats import tflm

            tflm.check_tflm(a.path.read_bytes(), path=a.path)
    run = arts[0].run()
    ho = held_out(run, data_dir)
    log.info("evaluating on %s", ho.describe())
    return _evaluate(arts, pairs, run, ho, budget_s, memo)


def _session(path: Path, runtime: str):
    if runtime == "tflm":
        from .formats import tflm

        return tflm.TFLMSession.load(path)
    return load_session(path)


def _accuracies(pairs, run: TrainedModel, ho: HeldOut, ref: np.ndarray, memo: Memo | None, images: str):
    """Accuracy of each artifact in each runtime kind its targets use (TFLM kernels on an MCU
    target, the default runtime otherwise), keyed by ``(path, kind)``; ``images``: digest of ``ho.x``."""
    n = len(run.classes)
    confusion, acc = {}, {}
    for a, t in pairs:
        kind = "tflm" if t.runtime == "tflm" else "default"
        if (a.path, kind) in acc:
            continue
        key = memo_lib.digest("predict", a.sha256, kind, images)
        probs = memo.get_array("predictions", key) if memo is not None else None
        if probs is None:
            probs = predict(_session(a.path, kind), ho.x, str(a.path))
            if memo is not None:
                memo.put_array("predictions", key, probs)
        s = metrics.scores(probs, ho.y, n, str(a.path))
        acc[(a.path, kind)] = (s.accuracy, metrics.agreement(probs, ref), s.per_class)
        confusion[a.path.name + (" (tflm)" if kind == "tflm" else "")] = s.confusion
    return acc, confusion


def _evaluate(arts, pairs, run: TrainedModel, ho: HeldOut, budget_s: float, memo: Memo | None) -> ValidationReport:
    n = len(run.classes)
    images = memo_lib.digest(ho.x) if memo is not None else ""  # hashed once: ~90 MB at 224 px
    ref, model = reference_probs(run, ho.x, memo, images)
    ref_scores = metrics.scores(ref, ho.y, n, str(run.model_path))
    keras_lat = latency.measure(lambda: _KerasSession(model), ho.x[:1], budget_s=budget_s, runtime_version="keras")
    acc, confusion = _accuracies(pairs, run, ho, ref, memo, images)
    confusion[FLOAT] = ref_scores.confusion
    cache: dict = {}
    records, findings = [], []
    for a, t in pairs:
        lat = latency_on(a, t, budget_s=budget_s, cache=cache)
        comp = None
        if t.delegate is not None:
            c = compat.for_artifact(a.path, t.delegate, a.precision)
            comp = c.to_json()
            if not c.full:
                findings.append(
                    f"{a.path.name} on {t.name}: only {c.ops_delegated}/{c.ops_total} ops "
                    f"({100 * c.macs_share:.0f}% of MACs) on {c.delegate}, {c.partitions} partition(s); "
                    f"falls back: {', '.join(sorted(set(c.fallback_ops))) or 'all'}. {c.note}".strip()
                )
        a_acc, agree, per = acc[(a.path, "tflm" if t.runtime == "tflm" else "default")]
        mem = tflm_memory(a, t) if t.runtime == "tflm" else None
        if mem is not None and not mem["fits"]:
            findings.append(
                f"{a.path.name} does not fit {t.name}: arena {mem['arena_bytes']:,} B (RAM budget "
                f"{mem['ram_budget_bytes']:,} B), flash {mem['flash_bytes']:,} B (budget "
                f"{mem['flash_budget_bytes']:,} B)"
            )
        records.append(
            Record(
                str(a.path),
                a.format,
                a.precision,
                t.name,
                a_acc,
                agree,
                round(100 * (ref_scores.accuracy - a_acc), 3),
                per,
                a.size_bytes,
                lat,
                comp,
                t.path,
                mem,
            )
        )
    default_acc = {p: v for (p, kind), v in acc.items() if kind == "default"}
    findings += _quality_findings([a for a in arts if a.path in default_acc], default_acc, ref_scores.accuracy, n)
    reference = Reference(ref_scores.accuracy, keras_lat, str(run.model_path))
    return ValidationReport(
        tuple(records),
        reference,
        _best(records, pairs),
        tuple(findings),
        tuple(run.classes),
        confusion,
        ho.to_json(),
        latency.host_info(),
        {t.name: t.path for _, t in pairs},
    )


def _quality_findings(arts, acc: dict, ref_acc: float, n_classes: int) -> list[str]:
    """Accuracy collapses and degenerate calibrations, with the fix."""
    out = []
    for a in arts:
        drop = 100 * (ref_acc - acc[a.path][0])
        cal = a.manifest.calibration or {}
        if drop >= COLLAPSE_POINTS:
            out.append(
                f"{a.path.name}: accuracy collapsed by {drop:.1f} points against the float model "
                f"({acc[a.path][0]:.3f} vs {ref_acc:.3f}; chance is {1 / n_classes:.3f}). Fix: calibrate on "
                "100-500 representative images (--calibration-size), or let `edgetransfer export "
                "--max-accuracy-drop` search for a recipe that keeps the accuracy."
            )
        if cal and int(cal.get("count", 0)) < 10:
            out.append(
                f"{a.path.name}: calibrated on only {cal.get('count')} image(s) ({cal.get('source')}); "
                "int8 ranges from so few images are unreliable."
            )
    return out


class _KerasSession:
    """The float model as a traced ``tf.function``: eager calls would add ~100 ms of Python
    overhead per image and make every exported file look faster than it is."""

    def __init__(self, model):
        from . import _lazy

        tf = _lazy.tf()
        self.fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def run(self, batch):
        return self.fn(batch).numpy()


def _best(records: list[Record], pairs) -> dict[str, Best]:
    """Per target: the fastest artifact (p50) whose accuracy drop is within the target's budget."""
    best = {}
    for t in {t.name: t for _, t in pairs}.values():
        limit = t.budgets.accuracy_drop if t.budgets.accuracy_drop is not None else 1.0
        ok = [r for r in records if r.target == t.name and (r.accuracy_drop or 0) <= limit]
        if ok:
            pick = min(ok, key=lambda r: r.latency.p50)
            best[t.name] = Best(
                pick.artifact,
                pick.latency.p50,
                pick.latency.provenance,
                pick.accuracy,
                pick.latency.detail.get("runtime"),
            )
    return best


def save(report: ValidationReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically), for ``check`` or a CI job to start from."""
    return write_json(path, report.to_json(samples=True))
