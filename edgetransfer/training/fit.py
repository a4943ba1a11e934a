"""Fitting: the two workflows, each phase resumable after an interruption (even ``kill -9``)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np

from .. import _lazy, backbones, progress
from ..backbones import graph
from ..backbones.weights import Weights, sha256_file
from ..data import tfdata
from ..errors import ConfigError
from .cluster import check_same
from .config import Plan, choose, reconsider
from .features import CacheStats, FeatureCache, FeatureKey, extract
from .model import class_weights, classifier, compile_model, cosine_schedule, strategy_for, unfreeze
from .phases import (
    FitContext,
    FitResult,
    _merge,
    fit_head,
    fit_phase,
    smoothed_stopping,
)

log = logging.getLogger("edgetransfer")


def run(ctx: FitContext) -> FitResult:
    """Build, choose the workflow, train; returns the classifier and what happened."""
    keras = _lazy.keras()
    cfg = ctx.cfg
    # The strategy first: a multi-worker one must exist before anything starts TF's runtime.
    strategy, desc = strategy_for(cfg.strategy, ctx.cluster, cfg.worker_timeout)
    keras.utils.set_random_seed(cfg.seed)
    runtime = {"mixed_precision": _precision(cfg.mixed_precision)}
    runtime.update(_split_batch(ctx, strategy))
    with strategy.scope(), progress.stage(f"building {ctx.spec.name} at {ctx.size} px (weights {cfg.weights})"):
        base = backbones.build(ctx.spec, weights=cfg.weights, input_size=ctx.size, cut_at=cfg.cut_at)
        base.trainable = False
        model = classifier(base, ctx.n_classes, cfg.dropout, ctx.size, f"{ctx.spec.name}_classifier")
    points = {c.name: c.layer for c in graph.cut_points(base)}
    after = [layer.name for layer in base.layers].index(points["stride16"]) + 1 if "stride16" in points else 0
    plan = choose(len(ctx.train_files), cfg, len(base.layers), len(base.layers) - after)
    if ctx.cluster and plan.workflow == "features":
        raise ConfigError(
            "the features workflow trains on one worker (a small head on cached vectors)",
            fix="use --workflow fine-tune for multi-worker training, or unset TF_CONFIG",
        )
    fit = _features if plan.workflow == "features" else _fine_tune
    if cfg.teacher and plan.workflow == "fine-tune":
        from .distill import fine_tune as fit
    result = fit(ctx, base, model, strategy, plan, desc)
    if cfg.workflow == "auto" and plan.workflow == "features":
        result = _then_fine_tune(ctx, base, model, strategy, result, desc, len(base.layers) - after)
    result.runtime = {**runtime, **result.runtime}
    return result


def _then_fine_tune(ctx: FitContext, base, model, strategy, first: FitResult, desc: str, last: int) -> FitResult:
    """``auto``: keep the features head, or fine-tune (in ``work/fine_tune``) when it shows the
    features do not fit the data (:func:`.config.reconsider`); the head starts the warm-up."""
    train_acc = max(first.history.get("accuracy", [0.0]))
    labels = np.array([f.label for f in ctx.val_files])
    val_acc = float(np.mean(np.argmax(first.val_probs, 1) == labels)) if first.val_probs is not None else 0.0
    plan = reconsider(first.plan, train_acc, val_acc, last)
    seen = {"features_head": {"train_accuracy": round(train_acc, 4), "val_accuracy": round(val_acc, 4)}}
    if plan.workflow == "features":
        first.plan, first.runtime = plan, {**first.runtime, **seen}
        return first
    log.info("auto: %s", plan.reason)
    work = ctx.work / "fine_tune"
    work.mkdir(exist_ok=True)
    fit = _fine_tune
    if ctx.cfg.teacher:
        from .distill import fine_tune as fit
    head = model.get_weights()
    result = fit(replace(ctx, work=work), base, model, strategy, plan, desc)
    result.val_probs = predict_files(model, ctx.val_files, ctx.size, ctx.cfg.policy, ctx.cfg.batch_size)
    tuned = float(np.mean(np.argmax(result.val_probs, 1) == labels))
    seen["fine_tune"] = {"val_accuracy": round(tuned, 4)}
    if tuned < val_acc:  # fine-tuning did worse (e.g. photo augmentation on digits): keep the head
        model.set_weights(head)
        first.plan = Plan("features", "0", f"{plan.reason}; but fine-tuning reached only {tuned:.3f}: head kept")
        first.runtime = {**first.runtime, **seen}
        first.images_trained += result.images_trained
        return first
    result.images_trained += first.images_trained
    result.runtime = {**result.runtime, **seen}
    return result


def _split_batch(ctx: FitContext, strategy) -> dict:
    """Check the workers agree and the global batch splits evenly; what each one gets."""
    replicas = strategy.num_replicas_in_sync
    batch = ctx.cfg.batch_size
    if ctx.cluster:
        check_same(strategy, ctx.cluster, ctx.digest)
    if batch % replicas:
        raise ConfigError(
            f"--batch-size {batch} does not split over {replicas} replicas",
            fix=f"use a multiple of {replicas} (--batch-size is the global batch)",
        )
    workers = len(ctx.cluster.addresses) if ctx.cluster else 1
    out = {"replicas": replicas, "global_batch": batch, "per_replica_batch": batch // replicas}
    if ctx.cluster:
        out.update(workers=workers, per_worker_batch=batch // workers, task=ctx.cluster.task)
    return out


def _precision(asked: bool) -> str:
    """Set the mixed-float16 policy where it pays (a GPU); on CPU warn and keep float32.

    float16 on CPU is emulated and slower, and Keras would still cast every layer, so the
    flag is ignored there (Keras mixed-precision guide: "mixed precision ... on GPUs and TPUs").
    """
    keras, tf = _lazy.keras(), _lazy.tf()
    if not asked:
        return "off"
    if not tf.config.list_logical_devices("GPU"):
        log.warning("WARNING: --mixed-precision ignored: no GPU here, training stays float32.")
        return "ignored (no GPU): float32"
    keras.mixed_precision.set_global_policy("mixed_float16")
    return "mixed_float16"


def _fine_tune(ctx: FitContext, base, model, strategy, plan: Plan, desc: str) -> FitResult:
    """Head warm-up on the frozen backbone, then the unfrozen top with the recipe in :mod:`.config`."""
    tf = _lazy.tf()
    cfg = ctx.cfg
    aug = tfdata.photo_augmentation(ctx.size, cfg.seed, crop_scale=cfg.crop_scale) if cfg.augment else None
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
    # One-hot labels: Keras' sparse cross-entropy has no label smoothing.
    one_hot = lambda x, y: (x, tf.one_hot(y, ctx.n_classes))  # noqa: E731
    train_ds, val_ds = train_ds.map(one_hot), val_ds.map(one_hot)
    cw = class_weights(ctx.train_files, ctx.n_classes, cfg.class_weights)
    fit = {"x": train_ds, "validation_data": val_ds, "class_weight": cw, "shuffle": False}  # tf.data shuffles
    opts = dict(label_smoothing=cfg.label_smoothing, weight_decay=cfg.weight_decay)
    if ctx.cluster:
        _local_symbolic_build(model, val_ds)
    with strategy.scope():
        compile_model(model, cfg.learning_rate, **opts)
    stop = lambda: smoothed_stopping(cfg.patience, cfg.stop_smoothing)  # noqa: E731
    head = fit_phase(model, "head", ctx.work, cfg.epochs, cfg.patience, fit, stop())
    tune: dict = {}
    if cfg.fine_tune_epochs and plan.unfreeze != "0":
        peak = cfg.learning_rate * cfg.fine_tune_lr_factor
        steps = math.ceil(len(ctx.train_files) / cfg.batch_size)
        lr = peak
        if cfg.lr_schedule == "cosine":
            lr = cosine_schedule(peak, steps, cfg.fine_tune_epochs, cfg.warmup_epochs)
        with strategy.scope():
            unfreeze(base, plan.unfreeze)
            compile_model(model, lr, **opts)
        tune = fit_phase(model, "fine_tune", ctx.work, cfg.fine_tune_epochs, cfg.patience, fit, stop())
    history, starts = _merge(head, tune)
    epochs = len(history.get("loss", []))
    return FitResult(model, plan, history, starts, None, desc, epochs * len(ctx.train_files))


def _local_symbolic_build(model, ds) -> None:
    """Work around Keras 3.15 under ``MultiWorkerMirroredStrategy``: ``fit`` builds the model
    from a first batch ``strategy.reduce``-d across replicas, which the collective strategy
    cannot do for a tuple of per-replica tensors (ValueError: "Attempt to convert a value
    (PerReplica...)"). Only the shapes matter there, so build from a local batch instead."""
    tf = _lazy.tf()
    _patch_scalar_reduce()
    x, y = next(iter(ds))
    batch = (x, y, tf.ones(tf.shape(y)[:1]))

    def build(iterator=None, data_batch=None) -> None:
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = build


def _patch_scalar_reduce() -> None:
    """Work around Keras 3.15's ``reduce_per_replica`` under a multi-worker strategy: it
    reduces every log with ``strategy.reduce("MEAN", v, axis=0)``, which fails on the scalar
    loss and metrics ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars
    are reduced over replicas only (``axis=None``); everything else goes to Keras as before."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "edgetransfer_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.edgetransfer_patch = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


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
    if cfg.teacher:  # the same head, trained on the teacher's soft labels too
        from .distill import features as distilled

        return distilled(ctx, pooled, key.digest(), (xtr, ytr, s1), (xva, yva, s2), model, strategy, plan, desc)
    cw = class_weights(ctx.train_files, ctx.n_classes, cfg.class_weights)
    fit = {"x": xtr, "y": ytr, "validation_data": (xva, yva), "class_weight": cw}
    history, probs = fit_head(ctx, strategy, model, fit)
    stats = CacheStats(s1.hits + s2.hits, s1.misses + s2.misses)
    n = len(history.get("loss", [])) * len(xtr)
    return FitResult(model, plan, history, [0], stats, desc, n, val_probs=probs)


def predict_files(model, files, size: int, policy: str, batch_size: int = 32) -> np.ndarray:
    """Class probabilities of ``model`` on ``files``, decoded as in training.

    The model is called batch by batch rather than through ``model.predict``: under a
    multi-worker strategy ``predict`` would shard the files and each worker would see only
    its share, while a direct call on the local copy of the weights sees them all.
    """
    ds = tfdata.image_dataset(files, size, batch_size=batch_size, policy=policy, cache=False)
    out = []
    with progress.bar(len(files), "images scored") as b:
        for x, _ in ds:
            out.append(np.asarray(model(x, training=False)))
            b.update(len(out[-1]))
    return np.concatenate(out)
