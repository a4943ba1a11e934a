"""Fitting: the two workflows, each phase resumable after an interruption (even ``kill -9``)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _lazy, backbones
from ..backbones import graph
from ..backbones.spec import BackboneSpec
from ..backbones.weights import Weights, sha256_file
from ..data import ImageFile, tfdata
from .config import Plan, TrainConfig, choose
from .features import CacheStats, FeatureCache, FeatureKey, extract
from .model import class_weights, classifier, compile_model, strategy_for, unfreeze


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


@dataclass
class FitResult:
    model: object
    plan: Plan
    history: dict
    phase_starts: list
    cache: CacheStats | None
    strategy: str
    images_trained: int


def _read_csv(path: Path) -> dict[str, list[float]]:
    """Per-epoch log, last row per epoch kept (a crash can log an epoch twice)."""
    if not path.exists():
        return {}
    with path.open() as fh:
        rows = {int(r["epoch"]): r for r in csv.DictReader(fh)}
    keys = [k for k in (next(iter(rows.values())) if rows else {}) if k != "epoch"]
    return {k: [float(rows[e][k]) for e in sorted(rows)] for k in keys}


def fit_phase(model, name: str, work: Path, epochs: int, patience: int, fit_kwargs: dict) -> dict:
    """One resumable phase: BackupAndRestore each epoch, weights saved when it ends."""
    keras = _lazy.keras()
    done = work / f"{name}.weights.h5"
    log = work / f"{name}.csv"
    if done.exists():  # finished before an interruption
        model.load_weights(str(done))
        return _read_csv(log)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(work / f"backup_{name}")),
        keras.callbacks.CSVLogger(str(log), append=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
    ]
    # BackupAndRestore sets model._initial_epoch when it restores and Keras never resets it,
    # so the next phase's fit() would start at that epoch and skip its own (issue #13).
    model._initial_epoch = None
    try:
        model.fit(epochs=epochs, callbacks=callbacks, verbose=0, **fit_kwargs)
    finally:
        model._initial_epoch = None
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


def run(ctx: FitContext) -> FitResult:
    """Build, choose the workflow, train; returns the classifier and what happened."""
    keras = _lazy.keras()
    cfg = ctx.cfg
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy, desc = strategy_for(cfg.strategy)
    with strategy.scope():
        base = backbones.build(ctx.spec, weights=cfg.weights, input_size=ctx.size, cut_at=cfg.cut_at)
        base.trainable = False
        model = classifier(base, ctx.n_classes, cfg.dropout, ctx.size, f"{ctx.spec.name}_classifier")
    points = {c.name: c.layer for c in graph.cut_points(base)}
    after = [layer.name for layer in base.layers].index(points["stride16"]) + 1 if "stride16" in points else 0
    plan = choose(len(ctx.train_files), cfg, len(base.layers), len(base.layers) - after)
    if plan.workflow == "features":
        return _features(ctx, base, model, strategy, plan, desc)
    return _fine_tune(ctx, base, model, strategy, plan, desc)


def _fine_tune(ctx: FitContext, base, model, strategy, plan: Plan, desc: str) -> FitResult:
    cfg = ctx.cfg
    aug = tfdata.augmentation(cfg.seed) if cfg.augment else None
    train_ds = tfdata.image_dataset(
        ctx.train_files,
        ctx.size,
        batch_size=cfg.batch_size,
        policy=cfg.policy,
        shuffle=True,
        seed=cfg.seed,
        augment=aug,
    )
    val_ds = tfdata.image_dataset(ctx.val_files, ctx.size, batch_size=cfg.batch_size, policy=cfg.policy)
    cw = class_weights(ctx.train_files, ctx.n_classes, cfg.class_weights)
    fit = {"x": train_ds, "validation_data": val_ds, "class_weight": cw, "shuffle": False}  # tf.data shuffles
    with strategy.scope():
        compile_model(model, cfg.learning_rate)
    head = fit_phase(model, "head", ctx.work, cfg.epochs, cfg.patience, fit)
    tune: dict = {}
    if cfg.fine_tune_epochs and plan.unfreeze != "0":
        with strategy.scope():
            unfreeze(base, plan.unfreeze)
            compile_model(model, cfg.learning_rate * cfg.fine_tune_lr_factor)
        tune = fit_phase(model, "fine_tune", ctx.work, cfg.fine_tune_epochs, cfg.patience, fit)
    history, starts = _merge(head, tune)
    epochs = len(history.get("loss", []))
    return FitResult(model, plan, history, starts, None, desc, epochs * len(ctx.train_files))


def _features(ctx: FitContext, base, model, strategy, plan: Plan, desc: str) -> FitResult:
    keras = _lazy.keras()
    cfg = ctx.cfg
    pooled = keras.Model(base.input, keras.layers.GlobalAveragePooling2D()(base.output))
    weights = Weights.parse(cfg.weights)
    wid = sha256_file(weights.path)[:16] if weights.path else weights.kind
    key = FeatureKey(ctx.spec.name, wid, ctx.size, cfg.cut_at, cfg.policy)
    cache = FeatureCache(backbones.cache_dir() / "features", key)
    aug = tfdata.augmentation(cfg.seed) if cfg.feature_views > 1 else None
    xtr, ytr, s1 = extract(
        pooled, ctx.train_files, cache, views=cfg.feature_views, augment=aug, batch_size=cfg.batch_size
    )
    xva, yva, s2 = extract(pooled, ctx.val_files, cache, batch_size=cfg.batch_size)
    # Computing features (a cold cache) consumes random state that a warm cache does not:
    # seed again so the head starts the same either way (issue #11: 0.948 cold vs 0.967 warm).
    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        inp = keras.Input((xtr.shape[1],), name="features")
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(inp)
        head = keras.Model(inp, keras.layers.Dense(ctx.n_classes, activation="softmax", name="classes")(x))
        compile_model(head, cfg.learning_rate)
    cw = class_weights(ctx.train_files, ctx.n_classes, cfg.class_weights)
    fit = {
        "x": xtr,
        "y": ytr,
        "validation_data": (xva, yva),
        "class_weight": cw,
        "batch_size": cfg.batch_size,
        "shuffle": True,
    }
    history = fit_phase(head, "head", ctx.work, cfg.epochs, cfg.patience, fit)
    model.get_layer("classes").set_weights(head.get_layer("classes").get_weights())
    stats = CacheStats(s1.hits + s2.hits, s1.misses + s2.misses)
    return FitResult(model, plan, history, [0], stats, desc, len(history.get("loss", [])) * len(xtr))


def predict_files(model, files, size: int, policy: str, batch_size: int = 32) -> np.ndarray:
    """Class probabilities of ``model`` on ``files``, decoded as in training."""
    ds = tfdata.image_dataset(files, size, batch_size=batch_size, policy=policy, cache=False)
    return np.asarray(model.predict(ds, verbose=0))
