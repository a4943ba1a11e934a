"""A file's accuracy on a target: scored once per (file, runtime kind) against the float model's predictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import memo as memo_lib
from .. import metrics, progress
from ..exporter.artifacts import ExportedArtifact
from ..memo import Memo
from ..records.measure import Reference
from ..runtime import load_session
from ..runtime import spec as runtime_spec
from ..training import TrainedModel
from . import latency, speed
from .heldout import Adapted, HeldOut, held_out, predict, reference_probs
from .timing import runtime_of


@dataclass(frozen=True)
class Scores:
    """Accuracy of one file in one runtime kind against the float model's predictions."""

    accuracy: float
    agreement: float | None
    drop: float | None  # points below the float model
    per_class: tuple[float | None, ...]
    split: str


def _accuracy_runtime(art: ExportedArtifact, target) -> runtime_spec.RuntimeSpec | None:
    """The runtime accuracy is scored in on ``target``: its own (TFLM kernels) or, ``None``, the file's default."""
    rt = runtime_of(target)
    return rt if rt.own_accuracy else None


def _session(path: Path, rt: runtime_spec.RuntimeSpec | None):
    return rt.runtime().load(path) if rt is not None else load_session(path)


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
    return Scores(s.accuracy, agree, drop, tuple(s.per_class), ho.describe()), s.confusion


def accuracy_kind(art: ExportedArtifact, target) -> str:
    """Which runtime's accuracy a target reports: its own (TFLM) or the file's default."""
    rt = _accuracy_runtime(art, target)
    return rt.name if rt is not None else "default"


class _KerasSession:
    """The float model as a traced ``tf.function``: eager calls would add ~100 ms of Python
    overhead per image and make every exported file look faster than it is."""

    def __init__(self, model):
        from .. import _lazy

        tf = _lazy.tf()
        self.fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def run(self, batch):
        return self.fn(batch).numpy()


def float_reference(run: TrainedModel, ho: HeldOut, budget_s: float, memo, images: str):
    """(the float model's Reference, its probabilities), or (None, None) for a run with no Keras model."""
    if not run.has_float_model:
        return None, None
    with progress.stage("float model on the held-out images", done=False):
        ref, model = reference_probs(run, ho.x, memo, images)
    acc = metrics.scores(ref, ho.y, len(run.classes), str(run.model_path)).accuracy
    lat = latency.measure(lambda: _KerasSession(model), ho.x[:1], budget_s=budget_s, runtime_version="keras")
    return Reference(acc, str(run.model_path), lat), ref


def accuracy_for_check(art: ExportedArtifact, target, data_dir: str | Path | None) -> Scores:
    """The file's accuracy and drop against its run's float model on the held-out data (default
    the run's own split), scored in the runtime ``target`` scores it in."""
    run = art.run()
    ho = held_out(run, data_dir)
    n = len(run.classes)
    if not run.has_float_model:  # imported from a file: its own accuracy, no drop (the gate refuses a drop budget)
        return score(art, target, ho, n, None, None)[0]
    ref, _ = reference_probs(run, ho.x)
    ref_acc = metrics.scores(ref, ho.y, n, str(run.model_path)).accuracy
    return score(art, target, ho, n, ref, ref_acc)[0]


def has_held_out(art: ExportedArtifact, data_dir: str | Path | None) -> bool:
    """Whether held-out data can be had: ``data_dir`` given, or the run's own data folder still there."""
    if data_dir is not None:
        return True
    try:
        return Path(art.run().manifest.data.root).is_dir()
    except Exception:  # noqa: BLE001 - a run that cannot be read has no held-out data either
        return False
