"""Accuracy of every exported file against the float model, and latency on every target.

Never raises on a missed budget: budgets are judged by :mod:`edgetransfer.check`. It does
raise on what cannot be validated at all (a file the target cannot run, a toolchain failure).
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import compat, graphops, images, latency
from . import data as data_lib
from . import targets as targets_lib
from .errors import DataError, RuntimeBackendError, UnsupportedError
from .export import ExportedArtifact
from .runtime import load_session, runtime_for
from .train import TrainedModel

FLOAT = "keras-float"


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
    per_class_accuracy: list
    size_bytes: int
    latency: latency.Latency
    compatibility: dict | None = None

    def to_json(self, samples: bool = False) -> dict:
        lat = self.latency
        return {"artifact": self.artifact, "format": self.format, "precision": self.precision, "target": self.target,
                "accuracy": self.accuracy, "agreement": self.agreement, "accuracy_drop": self.accuracy_drop,
                "per_class_accuracy": self.per_class_accuracy, "size_bytes": self.size_bytes,
                "latency_ms": {"p50": lat.p50, "p90": lat.p90, "p99": lat.p99, "mean": lat.mean, "std": lat.std,
                               "runs": lat.runs},
                "provenance": lat.provenance, "latency": lat.to_json(samples), "compatibility": self.compatibility}


@dataclass(frozen=True)
class ValidationReport:
    records: tuple[Record, ...]
    reference: dict  # the float model: accuracy, host latency
    best: dict  # target -> artifact
    findings: tuple[str, ...]
    classes: tuple[str, ...]
    confusion: dict  # artifact -> matrix
    data: str
    host: dict = field(default_factory=dict)

    def to_json(self, samples: bool = False) -> dict:
        return {"records": [r.to_json(samples) for r in self.records], "reference": self.reference, "best": self.best,
                "findings": list(self.findings), "classes": list(self.classes), "confusion": self.confusion,
                "data": self.data, "host": self.host}


def _artifacts(paths: Sequence[str | Path]) -> list[ExportedArtifact]:
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DataError("artifact not found", path=p, fix="pass files written by `edgetransfer export`")
        if not p.with_name(p.name + ".manifest.json").exists():
            raise DataError("no <file>.manifest.json beside the artifact", path=p,
                            fix="validate files written by `edgetransfer export` (the manifest names the float model)")
        out.append(ExportedArtifact.from_manifest(p))
    return out


def _eval_set(data_dir, run: TrainedModel):
    """Held-out images: the folder's val/ (or test/); for the run's own single-pool folder,
    the same seeded split training held out; any other folder is held out whole."""
    size, policy, classes = run.input_size, run.manifest.get("resize_policy", "crop"), run.classes
    ds = data_lib.load(data_dir)
    cfg = run.manifest.get("config") or {}
    same = Path(run.manifest["data"]["root"]).resolve() == Path(data_dir).resolve()
    if not (ds.split("val") or ds.split("test")) and same and cfg.get("val_split"):
        ds = data_lib.load(data_dir, val_split=cfg["val_split"], seed=cfg.get("seed", 0))
    if list(ds.classes) != list(classes):
        raise DataError(f"classes {list(ds.classes)} differ from the model's {classes}", path=data_dir,
                        fix="validate on a folder with the model's class folders")
    files = ds.split("val") or ds.split("test") or ds.files
    x = np.stack([images.load_array(f.path, size, policy) for f in files]).astype(np.float32)
    return x, np.array([f.label for f in files]), str(data_dir)


def _predict(session, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))])


def _scores(probs: np.ndarray, y: np.ndarray, n: int) -> tuple[float, list, list]:
    pred = probs.argmax(1)
    conf = np.zeros((n, n), dtype=int)
    np.add.at(conf, (y, pred), 1)
    per = [round(float(conf[c, c] / conf[c].sum()), 4) if conf[c].sum() else None for c in range(n)]
    return round(float((pred == y).mean()), 4), per, conf.tolist()


def _remote(target, art: ExportedArtifact) -> latency.Latency:
    cmd = target.runner.format(model=shlex.quote(str(art.path)), threads=target.threads or "")
    try:
        res = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeBackendError(f"runner for {target.name} failed to start: {exc}", path=target.path,
                                  fix="check the runner command in the profile") from None
    if res.returncode != 0:
        raise RuntimeBackendError(f"runner for {target.name} exited {res.returncode}: {res.stderr.strip()[-300:]}",
                                  path=target.path, fix="run the runner command by hand to see why")
    try:
        doc = json.loads(res.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RuntimeBackendError(f"runner for {target.name} printed no JSON", path=target.path,
                                  fix="the runner must end with `python -m edgetransfer.runtime bench ... --json`") from None
    return latency.Latency.from_json({**doc, "provenance": latency.MEASURED})


def validate(artifacts: Sequence[str | Path], data_dir: str | Path, target_names: Sequence[str], *,
             targets_dir: str | Path | None = None, budget_s: float = 2.0, skip_incompatible: bool = False
             ) -> ValidationReport:
    """Accuracy, agreement and latency of ``artifacts`` on ``target_names``.

    Raises:
        UnsupportedError: an artifact a target cannot run (unless ``skip_incompatible``).
        DataError: data or artifacts unusable. RuntimeBackendError: a runtime or runner failed.
    """
    arts = _artifacts(artifacts)
    tgts = [targets_lib.get(t, targets_dir) for t in target_names]
    pairs = [(a, t) for a in arts for t in tgts]
    bad = [(a, t, t.can_run(a.format, a.precision)) for a, t in pairs if t.can_run(a.format, a.precision)]
    if bad and not skip_incompatible:
        a, t, why = bad[0]
        raise UnsupportedError(f"{a.path.name} cannot run on target {t.name}: {why}",
                               fix=f"export a {'/'.join(t.precisions)} {'/'.join(t.formats)} file for {t.name}, "
                                   "or pass --skip-incompatible")
    pairs = [(a, t) for a, t in pairs if not t.can_run(a.format, a.precision)]
    run = TrainedModel.from_dir(arts[0].metadata["source_run"])
    x, y, data_label = _eval_set(data_dir, run)
    return _evaluate(arts, pairs, run, x, y, data_label, budget_s)


def _evaluate(arts, pairs, run: TrainedModel, x, y, data_label: str, budget_s: float) -> ValidationReport:
    n = len(run.classes)
    model = run.load_model()
    ref = np.asarray(model.predict(x, verbose=0))
    ref_acc, _, ref_conf = _scores(ref, y, n)
    keras_lat = latency.measure(lambda: _KerasSession(model), x[:1], budget_s=budget_s, runtime_version="keras")
    confusion, acc = {FLOAT: ref_conf}, {}
    for a in arts:
        probs = _predict(load_session(a.path), x)
        a_acc, per, conf = _scores(probs, y, n)
        agree = round(float((probs.argmax(1) == ref.argmax(1)).mean()), 4)
        acc[a.path] = (a_acc, agree, per)
        confusion[a.path.name] = conf
    host_cache: dict = {}
    records, findings = [], []
    for a, t in pairs:
        lat = _latency(a, t, x[:1], budget_s, host_cache)
        comp = None
        if t.delegate is not None:
            c = compat.check(graphops.ops_for(a.path), t.delegate, a.precision)
            comp = c.to_json()
            if not c.full:
                findings.append(f"{a.path.name} on {t.name}: only {c.ops_delegated}/{c.ops_total} ops "
                                f"({100 * c.macs_share:.0f}% of MACs) on {c.delegate}, {c.partitions} partition(s); "
                                f"falls back: {', '.join(sorted(set(c.fallback_ops))) or 'all'}. {c.note}".strip())
        a_acc, agree, per = acc[a.path]
        records.append(Record(str(a.path), a.format, a.precision, t.name, a_acc, agree,
                              round(100 * (ref_acc - a_acc), 3), per, a.size_bytes, lat, comp))
    ref_doc = {"accuracy": ref_acc, "latency_ms": {"p50": keras_lat.p50, "p90": keras_lat.p90, "p99": keras_lat.p99},
               "latency": keras_lat.to_json(samples=True), "model": str(run.model_path)}
    return ValidationReport(tuple(records), ref_doc, _best(records, pairs), tuple(findings), tuple(run.classes),
                            confusion, data_label, latency.host_info())


class _KerasSession:
    """The float model as a traced ``tf.function``: eager calls would add ~100 ms of Python
    overhead per image and make every exported file look faster than it is."""

    def __init__(self, model):
        from . import _lazy

        tf = _lazy.tf()
        self.fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def run(self, batch):
        return self.fn(batch).numpy()


def _latency(a: ExportedArtifact, t, batch, budget_s: float, cache: dict) -> latency.Latency:
    if t.measure == "host":
        key = (a.path, t.threads, t.provider)
        if key not in cache:
            version = runtime_for(a.path, t.provider).version()
            cache[key] = latency.measure(lambda: load_session(a.path, t.threads, t.provider), batch, budget_s=budget_s,
                                         threads=t.threads, runtime_version=version)
        return cache[key]
    if t.measure == "runner":
        return _remote(t, a)
    return latency.estimate(graphops.ops_for(a.path), t.device, a.precision)


def _best(records: list[Record], pairs) -> dict:
    """Per target: the fastest artifact (p50) whose accuracy drop is within the target's budget."""
    best = {}
    for t in {t.name: t for _, t in pairs}.values():
        limit = t.budgets.accuracy_drop if t.budgets.accuracy_drop is not None else 1.0
        ok = [r for r in records if r.target == t.name and (r.accuracy_drop or 0) <= limit]
        if ok:
            pick = min(ok, key=lambda r: r.latency.p50)
            best[t.name] = {"artifact": pick.artifact, "p50_ms": pick.latency.p50, "provenance": pick.latency.provenance,
                            "accuracy": pick.accuracy}
    return best


def save(report: ValidationReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically), for ``check`` or a CI job to start from."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
    tmp.write_text(json.dumps(report.to_json(samples=True), indent=2, default=str))
    tmp.replace(path)
    return path
