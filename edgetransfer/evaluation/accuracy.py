"""The evaluator: the one thing that runs a model on the held-out data.

As nncf's accuracy control hands one ``Evaluator`` to its algorithm, its ranker and its subset
selector (``nncf/quantization/algorithms/accuracy_control/evaluator.py``), every caller that needs a
file scored or timed is handed an :class:`Evaluator`: ``validate`` and ``check``, the quantization
doctor, the diagnosis, the importer. It holds one run's held-out images and the float model's
predictions on them, computed once, and scores any file against them. Nothing outside
:mod:`edgetransfer.evaluation`, the runtimes and training scores a file (``metrics.scores``), times
one (``latency.measure``) or opens a session (``load_session``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import memo as memo_lib
from .. import metrics, progress
from ..memo import Memo
from ..records.device import DeviceAccuracy
from ..records.measure import Reference
from ..records.run import TrainedModel
from ..runtime import latency, load_session, runtime_for
from ..runtime import spec as runtime_spec
from . import device as device_lib
from . import reference as reference_lib
from . import speed
from .heldout import Adapted, HeldOut, held_out, predict, probe_batch, reference_probs, to_model_input

# The doctor times each attempt this long in its default runtime; latency.measure makes at least
# 20 timed runs anyway, so a short budget still gives a stable p50 for the 1.5x bound.
ATTEMPT_LATENCY_S = 0.5


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


@dataclass(frozen=True)
class FileCheck:
    """One file in its default runtime on the held-out images: accuracy, per-image hits, probabilities."""

    accuracy: float
    hits: np.ndarray  # bool per image: top-1 right
    probs: np.ndarray


def accuracy_runtime(art, target) -> runtime_spec.RuntimeSpec | None:
    """The runtime accuracy is scored in on ``target``: its own (TFLM kernels) or, ``None``, the file's default."""
    rt = runtime_spec.get(target.runtime)
    return rt if rt.own_accuracy else None


def accuracy_kind(art, target) -> str:
    """Which runtime's accuracy a target reports: its own (TFLM), the file's default, or its device's
    (a runner that runs the held-out images: ``device <target>``)."""
    if device_lib.predicts(target):
        return f"device {target.name}"
    rt = accuracy_runtime(art, target)
    return rt.name if rt is not None else "default"


def open_session(path: str | Path, rt: runtime_spec.RuntimeSpec | None = None):
    """A session on ``path``: in runtime ``rt``, or the file's default."""
    return rt.runtime().load(path) if rt is not None else load_session(path)


class _KerasSession:
    """The float model as a traced ``tf.function``: eager calls would add ~100 ms of Python
    overhead per image and make every exported file look faster than it is."""

    def __init__(self, model):
        from .. import _lazy

        tf = _lazy.tf()
        self.fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def run(self, batch):
        return self.fn(batch).numpy()


class Evaluator:
    """One run's held-out images and the float model's predictions on them (computed once, on first
    use); any file scored against them.

    Args:
        run: the trained (or imported) run whose held-out data and float model are the reference.
        data_dir: held-out images; default the run's own held-out split.
        memo: reuse predictions made before by the same model or file on the same images (the sweep).
        held: the held-out data when the caller has it already.
        stored: an exported file: the float predictions its export stored for these images
            (:mod:`.reference`) are used instead of running the float model (no TensorFlow loaded).
    """

    def __init__(
        self,
        run: TrainedModel,
        data_dir: str | Path | None = None,
        *,
        memo: Memo | None = None,
        held=None,
        stored: str | Path | None = None,
    ) -> None:
        self.run, self.data_dir, self.memo = run, data_dir, memo
        self.stored = Path(stored) if stored is not None else None  # a file whose export may hold the reference
        self._held: HeldOut | None = held
        self._images = ""
        self._reference: tuple[np.ndarray, Any] | None = None
        self._reference_scores: metrics.Scores | None = None

    @property
    def held(self) -> HeldOut:
        if self._held is None:
            self._held = held_out(self.run, self.data_dir)
        return self._held

    @property
    def n_classes(self) -> int:
        return len(self.run.classes)

    @property
    def images(self) -> str:
        """The digest of the held-out images, hashed once (~90 MB at 224 px), for the memo's keys."""
        if self.memo is not None and not self._images:
            self._images = memo_lib.digest(self.held.x)
        return self._images

    # -- the float model, once

    def reference_probs(self) -> np.ndarray | None:
        """The float model's probabilities on the held-out images; ``None`` for a run without one (imported)."""
        if self._reference is None and self.stored is not None:
            found = reference_lib.find(self.stored, self.held, self.n_classes)
            if found is not None:
                self._reference = (found[0], None)  # no Keras model loaded
        if self._reference is not None:
            return self._reference[0]
        if not self.run.has_float_model:
            return None
        if self._reference is None:
            self._reference = reference_probs(self.run, self.held.x, self.memo, self.images)
        return self._reference[0]

    def reference_scores(self) -> metrics.Scores | None:
        probs = self.reference_probs()
        if probs is None:
            return None
        if self._reference_scores is None:
            self._reference_scores = self.metrics_of(probs, str(self.run.model_path))
        return self._reference_scores

    def reference_accuracy(self) -> float | None:
        s = self.reference_scores()
        return s.accuracy if s is not None else None

    def require_reference(self) -> float:
        """The float model's accuracy; for a run without one (imported from a file) the DataError
        :attr:`TrainedModel.model_path` raises, naming the run and the fix."""
        if not self.run.has_float_model:
            str(self.run.model_path)  # raises
        acc = self.reference_accuracy()
        assert acc is not None
        return acc

    def reference(self, budget_s: float) -> Reference | None:
        """The float model's :class:`Reference`: accuracy and the Keras model's latency (``validate``)."""
        if not self.run.has_float_model:
            return None
        with progress.stage("float model on the held-out images", done=False):
            acc = self.reference_accuracy()
        assert self._reference is not None and acc is not None
        model = self._reference[1]
        if model is None:  # read from the export: the Keras model is not loaded, so not timed
            assert self.stored is not None
            return Reference(acc, str(self.stored.parent / reference_lib.FILE), None)
        lat = latency.measure(
            lambda: _KerasSession(model), self.held.x[:1], budget_s=budget_s, runtime_version="keras"
        )
        return Reference(acc, str(self.run.model_path), lat)

    # -- any file

    def metrics_of(self, probs: np.ndarray, source: str) -> metrics.Scores:
        """Accuracy, per-class accuracy, confusion and loss of ``probs`` on the held-out labels."""
        return metrics.scores(probs, self.held.y, self.n_classes, source)

    def predictions(self, art, rt: runtime_spec.RuntimeSpec | None = None, execution=None) -> np.ndarray:
        """Probabilities of exported file ``art`` on the held-out images, in runtime ``rt`` (default the file's),
        or ``execution`` = ``(runtime, settings)`` (bf16 execution); memoised when a memo was given."""
        kind = rt.name if rt is not None else "default"
        if execution is not None:
            kind = f"{execution[0]} {sorted(execution[1].items())}"
        key = memo_lib.digest("predict", art.sha256, kind, self.images) if self.memo is not None else ""
        probs = self.memo.get_array("predictions", key) if self.memo is not None else None
        if probs is None:
            if execution is not None:
                threads, own = speed.load_args(execution[1], None)
                session = runtime_spec.get(execution[0]).runtime().load(art.path, threads, own)
            else:
                session = open_session(art.path, rt)
            adapted = Adapted(session, art.metadata.get("imported"))
            probs = predict(adapted, self.held.x, str(art.path))
            if self.memo is not None:
                self.memo.put_array("predictions", key, probs)
        return probs

    def scores(self, art, target, execution=None) -> tuple[Scores, tuple]:
        """(accuracy, agreement and drop of ``art`` in the runtime ``target`` scores it in, confusion);
        ``execution``: ``(runtime, settings)`` to score in instead (bf16 execution on the same runtime)."""
        probs = self.predictions(art, accuracy_runtime(art, target), execution)
        by = f"{execution[0]}, host" if execution is not None else device_lib.host_label(art, target)
        dev = None
        if execution is None and device_lib.predicts(target):  # the device runs the images: its figures count
            with progress.stage(f"{art.path.name}: held-out images on {target.name}'s device", done=False):
                probs, dev = device_lib.compare(art, target, self.held.x, self.held.y, self.n_classes, host=probs)
            by = dev.label
        s = self.metrics_of(probs, f"{art.path.name} on {target.name}" if dev else str(art.path))
        ref, ref_acc = self.reference_probs(), self.reference_accuracy()
        agree = metrics.agreement(probs, ref) if ref is not None else None
        drop = round(100 * (ref_acc - s.accuracy), 3) if ref_acc is not None else None
        return Scores(s.accuracy, agree, drop, tuple(s.per_class), self.held.describe(), by, dev), s.confusion

    def check_file(self, path: str | Path) -> FileCheck:
        """A file written just now (a doctor attempt, a diagnosis fix) in its default runtime."""
        probs = predict(load_session(path), self.held.x, str(path))
        acc = self.metrics_of(probs, str(path)).accuracy
        return FileCheck(acc, probs.argmax(axis=1) == self.held.y, probs)

    def p50_ms(self, path: str | Path, budget_s: float = ATTEMPT_LATENCY_S) -> float:
        """Host p50 (ms) of a file in its default runtime: the doctor's bound against the plain int8 file."""
        lat = latency.measure(
            lambda: runtime_for(path).load(path, None), probe_batch(self.held.x.shape[1]), budget_s=budget_s
        )
        return lat.p50

    def outputs(self, session, transform: dict | None, source: str) -> np.ndarray:
        """Raw outputs of an open ``session`` on the held-out images fed through ``transform`` (the importer
        reads them to tell probabilities from logits)."""
        return predict(session, to_model_input(self.held.x, transform), source)


def has_held_out(art, data_dir: str | Path | None) -> bool:
    """Whether held-out data can be had: ``data_dir`` given, or the run's own data folder still there."""
    if data_dir is not None:
        return True
    try:
        return Path(art.run().manifest.data.root).is_dir()
    except Exception:  # noqa: BLE001 - a run that cannot be read has no held-out data either
        return False
