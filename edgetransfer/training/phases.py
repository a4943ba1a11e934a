"""The pieces every way of fitting shares: the context a fit runs in, its result, one resumable
phase (checkpointed, early-stopped, logged) and the merge of phase histories. Below ``fit``
(the workflows) and ``distill`` (fitting on a teacher's soft labels), which both use them."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _lazy, progress
from ..backbones.spec import BackboneSpec
from ..data import ImageFile
from . import checkpoint, interrupt
from .cluster import Cluster
from .config import Plan, TrainConfig
from .features import CacheStats

log = logging.getLogger("edgetransfer")


@dataclass(frozen=True)
class FitContext:
    """Everything a fit needs, built once by :func:`edgetransfer.training.train`."""

    spec: BackboneSpec
    cfg: TrainConfig
    size: int
    n_classes: int
    train_files: tuple[ImageFile, ...]
    val_files: tuple[ImageFile, ...]
    work: Path
    cluster: Cluster | None = None  # multi-worker training (TF_CONFIG), else None
    digest: str = ""  # hash of settings + data, compared across workers


@dataclass
class FitResult:
    model: object
    plan: Plan
    history: dict
    phase_starts: list
    cache: CacheStats | None
    strategy: str
    images_trained: int
    runtime: dict = field(default_factory=dict)
    # held-out probabilities when training already computed them (features: the head on the cached
    # features is the whole model on the images, without a second pass through the backbone)
    val_probs: np.ndarray | None = None
    distill: dict | None = None  # the teacher and settings when distilled (distill.py)


def _read_csv(path: Path) -> dict[str, list[float]]:
    """Per-epoch log, last row per epoch kept (a crash can log an epoch twice)."""
    if not path.exists():
        return {}
    with path.open() as fh:
        rows = {int(r["epoch"]): r for r in csv.DictReader(fh)}
    keys = [k for k in (next(iter(rows.values())) if rows else {}) if k != "epoch"]
    return {k: [float(rows[e][k]) for e in sorted(rows)] for k in keys}


def smoothed_stopping(patience: int, smoothing: float, monitor: str = "val_accuracy"):
    """Early stopping on an exponential moving average of ``monitor`` (higher is better).

    With ~150 validation images one image moves accuracy by 0.7%, so the raw curve is
    noisy; stopping and picking weights on its EMA (``s = a*s + (1-a)*v``) avoids
    stopping on one unlucky epoch and keeping a lucky one (Prechelt 1998). The EMA is
    added to the logs as ``<monitor>_smoothed`` (so it lands in the CSV and the history),
    and the weights of the best smoothed epoch are restored when the phase ends.
    """
    keras = _lazy.keras()

    class SmoothedEarlyStopping(keras.callbacks.Callback):  # type: ignore[name-defined]  # keras is lazy
        def on_train_begin(self, logs=None):
            self.ema, self.best, self.best_weights, self.wait = None, -np.inf, None, 0

        def on_epoch_end(self, epoch, logs=None):
            if logs is None or monitor not in logs:
                return
            v = float(logs[monitor])
            self.ema = v if self.ema is None else smoothing * self.ema + (1 - smoothing) * v
            logs[f"{monitor}_smoothed"] = self.ema
            if self.ema >= self.best:  # ties: keep the later, longer-trained weights
                self.best, self.best_weights, self.wait = self.ema, self.model.get_weights(), 0
                return
            self.wait += 1
            if self.wait >= patience:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return SmoothedEarlyStopping()


def _drop_torn_backup(backup: Path, log: Path) -> None:
    """Kept for callers of the old name: a backup with nothing loadable is removed with its log
    (the checks themselves now run when the phase restores, in :mod:`.checkpoint`)."""
    import h5py

    for f in sorted(backup.glob("*")) if backup.is_dir() else []:
        try:
            if f.suffix == ".h5":
                with h5py.File(f, "r"):
                    pass
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except (OSError, ValueError):
            logging.getLogger("edgetransfer").warning(
                "warning: the checkpoint %s was torn by the interruption; this phase restarts", f
            )
            shutil.rmtree(backup, ignore_errors=True)
            log.unlink(missing_ok=True)
            return


_PHASE_WORDS = {"head": "head", "fine_tune": "fine-tune"}


def fit_phase(model, name: str, work: Path, epochs: int, patience: int, fit_kwargs: dict, stopper=None) -> dict:
    """One resumable phase: BackupAndRestore each epoch, weights saved when it ends.

    Args:
        stopper: the early-stopping callback; default Keras ``EarlyStopping`` on
            ``val_loss`` with the best weights restored. It runs before the CSV logger, so
            what it adds to the logs is recorded.
    """
    keras = _lazy.keras()
    done = work / f"{name}.weights.h5"
    log = work / f"{name}.csv"
    if done.exists():  # finished before an interruption
        model.load_weights(str(done))
        return _read_csv(log)
    stopper = stopper or keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    backup = checkpoint.callback(work / f"backup_{name}", log)
    shown = checkpoint.progress_callback(_PHASE_WORDS.get(name, name), epochs)
    # interrupt first: a Ctrl-C lost in a finaliser stops the phase at the next batch
    callbacks = [interrupt.callback(), backup, stopper, keras.callbacks.CSVLogger(str(log), append=True), shown]
    # BackupAndRestore sets model._initial_epoch when it restores and Keras never resets it,
    # so the next phase's fit() would start at that epoch and skip its own (issue #13).
    model._initial_epoch = None
    try:
        with progress.stage(
            f"{_PHASE_WORDS.get(name, name)}: up to {epochs} epoch{'s' if epochs != 1 else ''}", done=False
        ):
            model.fit(epochs=epochs, callbacks=callbacks, verbose=0, **fit_kwargs)
    finally:
        model._initial_epoch = None
    interrupt.check()  # before the phase is marked finished
    tmp = work / f".{name}.tmp.weights.h5"
    model.save_weights(str(tmp))
    os.replace(tmp, done)
    return _read_csv(log)


def _merge(*histories: dict) -> tuple[dict, list[int]]:
    merged: dict[str, list[float]] = {}
    starts = []
    for h in histories:
        starts.append(len(next(iter(merged.values()), [])))
        for k, v in h.items():
            merged.setdefault(k, []).extend(v)
    return merged, starts
