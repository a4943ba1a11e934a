"""The Keras side of training: models, phases, resume, evaluation and the run artifact."""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import _lazy, backbones, pipeline, plots
from .backbones import graph
from .backbones.weights import Weights, sha256_file
from .features import CacheStats, FeatureCache, FeatureKey, extract
from .train import Plan, TrainConfig, choose


@dataclass
class FitResult:
    model: object
    plan: Plan
    history: dict
    phase_starts: list
    cache: CacheStats | None
    strategy: str
    images_trained: int


def strategy_for(name: str):
    """``(tf.distribute strategy, description)``: multi-worker from TF_CONFIG, mirrored
    over several GPUs (or logical CPUs when asked), else the default single device."""
    tf = _lazy.tf()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto" and os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy(), "multi-worker mirrored (TF_CONFIG)"
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices), f"mirrored over {len(devices)} devices"
    return tf.distribute.get_strategy(), f"single device ({'GPU' if gpus else 'CPU'})"


def _classifier(base, n_classes: int, dropout: float, size: int, name: str):
    keras = _lazy.keras()
    inp = keras.Input((size, size, 3), name="image")
    # training=False keeps BatchNorm in inference mode even once the base is unfrozen, so
    # the small fine-tuning batches do not wreck the ImageNet statistics.
    x = base(inp, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inp, out, name=name)


def _compile(model, lr: float) -> None:
    keras = _lazy.keras()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _class_weights(files, n_classes: int, enabled: bool) -> dict | None:
    if not enabled:
        return None
    counts = Counter(f.label for f in files)
    total = sum(counts.values())
    return {c: total / (n_classes * counts[c]) for c in range(n_classes) if counts[c]}


def _read_csv(path: Path) -> dict[str, list[float]]:
    """Per-epoch log, last row per epoch kept (a crash can log an epoch twice)."""
    if not path.exists():
        return {}
    rows = {int(r["epoch"]): r for r in csv.DictReader(path.open())}
    keys = [k for k in (next(iter(rows.values())) if rows else {}) if k != "epoch"]
    return {k: [float(rows[e][k]) for e in sorted(rows)] for k in keys}


def _fit_phase(model, name: str, work: Path, epochs: int, patience: int, fit_kwargs: dict) -> dict:
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
    model.fit(epochs=epochs, callbacks=callbacks, verbose=0, **fit_kwargs)
    tmp = work / f".{name}.tmp.weights.h5"
    model.save_weights(str(tmp))
    os.replace(tmp, done)
    return _read_csv(log)


def _unfreeze(base, depth: str) -> int:
    base.trainable = True
    layers = base.layers
    keep = 0 if depth == "all" else max(0, len(layers) - int(depth))
    for i, layer in enumerate(layers):
        layer.trainable = i >= keep
    return sum(1 for layer in layers if layer.trainable and layer.weights)


def _merge(*histories: dict) -> tuple[dict, list[int]]:
    merged: dict[str, list[float]] = {}
    starts = []
    for h in histories:
        starts.append(len(next(iter(merged.values()), [])))
        for k, v in h.items():
            merged.setdefault(k, []).extend(v)
    return merged, starts


def run(spec, cfg: TrainConfig, size: int, n_classes: int, train_files, val_files, work: Path) -> FitResult:
    """Build, choose, train; returns the classifier and what happened."""
    keras = _lazy.keras()
    keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy, desc = strategy_for(cfg.strategy)
    with strategy.scope():
        base = backbones.build(spec, weights=cfg.weights, input_size=size, cut_at=cfg.cut_at)
        base.trainable = False
        model = _classifier(base, n_classes, cfg.dropout, size, f"{spec.name}_classifier")
    points = {c.name: c.layer for c in graph.cut_points(base)}
    after = [layer.name for layer in base.layers].index(points["stride16"]) + 1 if "stride16" in points else 0
    plan = choose(len(train_files), cfg, len(base.layers), len(base.layers) - after)
    cw = _class_weights(train_files, n_classes, cfg.class_weights)
    if plan.workflow == "features":
        return _features(spec, cfg, size, n_classes, base, model, train_files, val_files, work, strategy, plan, cw, desc)
    aug = pipeline.augmentation(cfg.seed) if cfg.augment else None
    train_ds = pipeline.image_dataset(train_files, size, batch_size=cfg.batch_size, policy=cfg.policy,
                                      shuffle=True, seed=cfg.seed, augment=aug)
    val_ds = pipeline.image_dataset(val_files, size, batch_size=cfg.batch_size, policy=cfg.policy)
    fit = {"x": train_ds, "validation_data": val_ds, "class_weight": cw, "shuffle": False}  # tf.data shuffles
    with strategy.scope():
        _compile(model, cfg.learning_rate)
    head = _fit_phase(model, "head", work, cfg.epochs, cfg.patience, fit)
    tune = {}
    if cfg.fine_tune_epochs and plan.unfreeze != "0":
        with strategy.scope():
            _unfreeze(base, plan.unfreeze)
            _compile(model, cfg.learning_rate * cfg.fine_tune_lr_factor)
        tune = _fit_phase(model, "fine_tune", work, cfg.fine_tune_epochs, cfg.patience, fit)
    history, starts = _merge(head, tune)
    epochs = len(history.get("loss", []))
    return FitResult(model, plan, history, starts, None, desc, epochs * len(train_files))


def _features(spec, cfg, size, n_classes, base, model, train_files, val_files, work, strategy, plan, cw, desc) -> FitResult:
    keras = _lazy.keras()
    pooled = keras.Model(base.input, keras.layers.GlobalAveragePooling2D()(base.output))
    weights = Weights.parse(cfg.weights)
    wid = sha256_file(weights.path)[:16] if weights.path else weights.kind
    cache = FeatureCache(backbones.cache_dir() / "features", FeatureKey(spec.name, wid, size, cfg.cut_at, cfg.policy))
    aug = pipeline.augmentation(cfg.seed) if cfg.feature_views > 1 else None
    xtr, ytr, s1 = extract(pooled, train_files, cache, views=cfg.feature_views, augment=aug, batch_size=cfg.batch_size)
    xva, yva, s2 = extract(pooled, val_files, cache, batch_size=cfg.batch_size)
    with strategy.scope():
        inp = keras.Input((xtr.shape[1],), name="features")
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(inp)
        head = keras.Model(inp, keras.layers.Dense(n_classes, activation="softmax", name="classes")(x))
        _compile(head, cfg.learning_rate)
    fit = {"x": xtr, "y": ytr, "validation_data": (xva, yva), "class_weight": cw,
           "batch_size": cfg.batch_size, "shuffle": True}
    history = _fit_phase(head, "head", work, cfg.epochs, cfg.patience, fit)
    model.get_layer("classes").set_weights(head.get_layer("classes").get_weights())
    stats = CacheStats(s1.hits + s2.hits, s1.misses + s2.misses)
    return FitResult(model, plan, history, [0], stats, desc, len(history.get("loss", [])) * len(xtr))


def evaluate(model, files, size: int, n_classes: int, policy: str, batch_size: int = 32) -> dict:
    """Accuracy, loss, per-class accuracy and the confusion matrix on ``files``."""
    ds = pipeline.image_dataset(files, size, batch_size=batch_size, policy=policy, cache=False)
    probs = np.asarray(model.predict(ds, verbose=0))
    y = np.array([f.label for f in files])
    pred = probs.argmax(1)
    conf = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(conf, (y, pred), 1)
    per_class = [float(conf[c, c] / conf[c].sum()) if conf[c].sum() else None for c in range(n_classes)]
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1))))
    return {"val_accuracy": float((pred == y).mean()), "val_loss": loss, "val_images": len(y),
            "per_class_accuracy": per_class, "confusion": conf.tolist()}


def finish(work: Path, r: FitResult, *, val_files, spec, cfg: TrainConfig, size, ds, n_train, seconds, versions,
           resumed) -> dict:
    """Evaluate on ``val_files``, write model.keras, the PNGs and manifest.json into ``work``."""
    metrics = evaluate(r.model, val_files, size, len(ds.classes), cfg.policy, cfg.batch_size)
    return _write(work, r, metrics, spec=spec, cfg=cfg, size=size, ds=ds, n_train=n_train, seconds=seconds,
                  versions=versions, resumed=resumed)


def _write(work, r, metrics, *, spec, cfg, size, ds, n_train, seconds, versions, resumed) -> dict:
    tmp = work / ".model.tmp.keras"
    r.model.save(tmp)
    os.replace(tmp, work / "model.keras")
    plots.training_curves(r.history, r.phase_starts, work / "curves.png")
    plots.confusion_matrix(np.array(metrics["confusion"]), ds.classes, work / "confusion.png")
    manifest = {
        "kind": "edgetransfer.run", "schema": 1,
        "backbone": spec.name, "weights": Weights.parse(cfg.weights).describe(), "input_size": size,
        "preprocess": spec.preprocess.to_json(), "resize_policy": cfg.policy, "cut_at": cfg.cut_at,
        "classes": list(ds.classes), "workflow": r.plan.workflow, "unfreeze": r.plan.unfreeze,
        "reason": r.plan.reason, "metrics": metrics, "history": r.history, "phase_starts": r.phase_starts,
        "data": {"root": str(ds.root), "fingerprint": ds.fingerprint(), "split_source": ds.split_source,
                 "train_images": n_train, "counts": ds.report.counts},
        "seed": cfg.seed, "config": asdict(cfg), "train_seconds": round(seconds, 2),
        "images_per_second": round(r.images_trained / seconds, 2) if seconds else None,
        "strategy": r.strategy, "feature_cache": asdict(r.cache) if r.cache else None,
        "resumed": resumed, "versions": versions,
        "files": {"model": "model.keras", "curves": "curves.png", "confusion": "confusion.png"},
    }
    tmpm = work / ".manifest.tmp.json"
    tmpm.write_text(json.dumps(manifest, indent=2))
    os.replace(tmpm, work / "manifest.json")
    return manifest
