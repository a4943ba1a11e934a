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


def fit_head(ctx: FitContext, strategy, model, fit: dict, loss=None, metrics=None) -> tuple[dict, np.ndarray | None]:
    """The features workflow's head on cached vectors (dropout + the dense ``classes`` layer) as
    one resumable phase, copied into ``model``'s ``classes`` layer when it ends.

    Args:
        fit: ``x``, ``y``, ``validation_data`` and class or sample weights for ``Model.fit``.
        loss, metrics: distillation's (``distill.py``): the head then outputs logits (the softmax
            is ``model``'s); without them, probabilities and the plain sparse cross-entropy.

    Returns:
        The phase's history and the head's held-out class probabilities (the whole model's on
        the images, without a second pass through the backbone).
    """
    from .model import compile_model

    keras = _lazy.keras()
    cfg, logits = ctx.cfg, loss is not None
    # Computing features (a cold cache) consumes random state that a warm cache does not:
    # seed again so the head starts the same either way (issue #11: 0.948 cold vs 0.967 warm).
    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        inp = keras.Input((fit["x"].shape[1],), name="features")
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(inp)
        out = keras.layers.Dense(ctx.n_classes, activation=None if logits else "softmax", name="classes")(x)
        head = keras.Model(inp, out)
        compile_model(head, cfg.learning_rate, **({"loss": loss, "metrics": metrics} if logits else {}))
    fit = {**fit, "batch_size": cfg.batch_size, "shuffle": True}
    history = fit_phase(head, "head", ctx.work, cfg.epochs, cfg.patience, fit)
    model.get_layer("classes").set_weights(head.get_layer("classes").get_weights())
    xva = fit["validation_data"][0]
    # called directly in chunks, not through predict(), which a multi-worker strategy would shard
    chunks = [np.asarray(head(xva[i : i + 256], training=False)) for i in range(0, len(xva), 256)]
    if not chunks:
        return history, None
    scores = np.concatenate(chunks)
    if logits:
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
    return history, scores


def _merge(*histories: dict) -> tuple[dict, list[int]]:
    merged: dict[str, list[float]] = {}
    starts = []
    for h in histories:
        starts.append(len(next(iter(merged.values()), [])))
        for k, v in h.items():
            merged.setdefault(k, []).extend(v)
    return merged, starts
