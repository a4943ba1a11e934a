"""Knowledge distillation: a student learns from a trained teacher run's soft predictions.

The loss (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network")::

    alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, softmax(s))

with ``t`` the teacher's logits, ``s`` the student's, ``T`` the temperature (the T^2 keeps
the soft term's gradients on the scale of the hard one's when T changes, as in the paper).

The teacher labels the training images and ``views - 1`` augmented views of each, made
once at the larger of the two input sizes and resized for each model, so teacher and
student see the same crop. The teacher's logits are cached on disk under a key made of the
teacher's model.keras digest, the images, the views, the seed and the view size; the
student's features on the views (features workflow) under its own feature key.

The student is trained through a logits view of its model (the ``classes`` layer's
matmul without the softmax); the saved model is the plain classifier, so a distilled
student is the same graph as a plain one and runs at the same latency: only its weights differ.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _lazy, backbones, images
from .._progress import progress
from ..backbones.weights import sha256_file
from ..data import ImageFile, tfdata
from ..errors import ConfigError
from ..records.run import TrainedModel

log = logging.getLogger("edgetransfer")
LOSS = "alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, softmax(s))  (Hinton et al. 2015)"


@dataclass(frozen=True)
class Teacher:
    """A finished run used as teacher, and the digest of its model file."""

    run: TrainedModel
    digest: str

    def describe(self) -> dict:
        m = self.run.manifest
        return {
            "run": str(Path(self.run.run_dir).resolve()),
            "backbone": m.backbone,
            "input_size": m.input_size,
            "workflow": m.workflow,
            "val_accuracy": m.metrics.val_accuracy,
            "model_sha256": self.digest,
        }


def load_teacher(path: str | Path, classes: Sequence[str] | None = None) -> Teacher:
    """Open the teacher run and check it knows exactly the student's classes, in order.

    Raises:
        ConfigError: not a finished run, or other classes (exit 2).
    """
    run = TrainedModel.from_dir(path)
    if classes is not None and list(run.manifest.classes) != list(classes):
        raise ConfigError(
            f"the teacher's classes differ: teacher has {list(run.manifest.classes)}, the data has {list(classes)}",
            path=path,
            fix="train the teacher on the same class folders as --data (or pass another --teacher)",
        )
    model = run.model_path
    if not model.is_file():  # deleted, or a folder in its place: exit 2 naming it, not an internal error
        what = "a folder" if model.is_dir() else "missing"
        raise ConfigError(
            f"the teacher's model file {model.name} is {what}",
            path=model,
            fix="pass the --out folder of a finished `edgetransfer train` whose model.keras is intact",
        )
    return Teacher(run, sha256_file(model)[:16])


def distill_loss(n_classes: int, temperature: float, alpha: float, label_smoothing: float = 0.0):
    """The Keras loss over targets ``[one-hot y (C) | teacher logits (C) | w (1)]`` and student logits.

    ``w`` is 1 on training rows and 0 on validation rows, which have no teacher: there the
    loss is the plain cross-entropy, so ``val_loss`` compares with a plain student's.
    """
    keras = _lazy.keras()
    ops = keras.ops
    c, t = n_classes, float(temperature)

    def loss(y_true, y_pred):
        y = y_true[:, :c]
        if label_smoothing:
            y = y * (1 - label_smoothing) + label_smoothing / c
        teacher, w = y_true[:, c : 2 * c], y_true[:, 2 * c]
        s = ops.cast(y_pred, "float32")
        hard = -ops.sum(y * ops.log_softmax(s, axis=-1), axis=-1)
        p = ops.softmax(teacher / t, axis=-1)
        soft = ops.sum(p * (ops.log_softmax(teacher / t, axis=-1) - ops.log_softmax(s / t, axis=-1)), axis=-1)
        a = alpha * w
        return a * (t * t) * soft + (1 - a) * hard

    return loss


def accuracy_metric(n_classes: int):
    """Top-1 accuracy of the logits against the one-hot part of the targets."""
    ops = _lazy.keras().ops

    def accuracy(y_true, y_pred):
        return ops.cast(ops.argmax(y_true[:, :n_classes], axis=-1) == ops.argmax(y_pred, axis=-1), "float32")

    return accuracy


def targets(labels: np.ndarray, n_classes: int, teacher_logits: np.ndarray | None) -> np.ndarray:
    """``[one-hot | teacher logits | w]`` rows; no teacher (validation) gives zeros and w = 0."""
    one_hot = np.eye(n_classes, dtype=np.float32)[labels]
    if teacher_logits is None:
        return np.concatenate([one_hot, np.zeros_like(one_hot), np.zeros((len(labels), 1), np.float32)], axis=1)
    w = np.ones((len(labels), 1), np.float32)
    return np.concatenate([one_hot, teacher_logits.astype(np.float32), w], axis=1)


def logits_model(model):
    """A model sharing ``model``'s layers that outputs the ``classes`` layer's logits."""
    keras = _lazy.keras()
    dense = model.get_layer("classes")

    class Logits(keras.layers.Layer):  # type: ignore[name-defined]  # keras is lazy
        def __init__(self, dense, **kw):
            super().__init__(**kw)
            self.dense = dense  # tracked: its kernel and bias are trained through this layer

        def call(self, x):
            x = keras.ops.cast(x, "float32")
            return keras.ops.matmul(x, self.dense.kernel) + self.dense.bias

    return keras.Model(model.input, Logits(dense, name="logits")(dense.input), name=f"{model.name}_logits")


def _teacher_logits_fn(model) -> Callable[[np.ndarray], np.ndarray]:
    """Images -> the teacher's logits (pre-softmax); log-probabilities if it has no ``classes`` layer."""
    keras = _lazy.keras()
    try:
        dense = model.get_layer("classes")
        feats = keras.Model(model.input, dense.input)
        kernel, bias = (np.asarray(w) for w in dense.get_weights())
        return lambda x: np.asarray(feats(x, training=False), np.float64) @ kernel + bias
    except ValueError:  # the log of the softmax differs from the logits by a constant: same soft labels
        return lambda x: np.log(np.clip(np.asarray(model(x, training=False), np.float64), 1e-30, None))


def images_digest(files: Sequence[ImageFile]) -> str:
    return hashlib.sha256("\n".join(f.sha256 for f in files).encode()).hexdigest()[:16]


def _views_key(files: Sequence[ImageFile], views: int, seed: int, size: int, policy: str) -> str:
    return hashlib.sha256(repr((images_digest(files), views, seed, size, policy)).encode()).hexdigest()[:16]


def view_batches(files: Sequence[ImageFile], size: int, views: int, seed: int, policy: str, batch_size: int = 32):
    """Yield ``(view, uint8 batch at size)`` for views 1..views-1, in file order, deterministically.

    Each view pass gets a fresh augmentation seeded by ``seed`` and the view, so the same
    files, views and seed give the same pixels whatever was cached before.
    """
    for v in range(1, views):
        aug = tfdata.augmentation(seed * 1009 + v)
        for i in range(0, len(files), batch_size):
            x = np.stack([images.load_array(f.path, size, policy) for f in files[i : i + batch_size]])
            yield v, np.clip(np.asarray(aug(x.astype(np.float32), training=True)), 0, 255).astype(np.uint8)


def resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[1] == size:
        return x.astype(np.float32)
    tf = _lazy.tf()
    return np.asarray(tf.image.resize(x.astype(np.float32), (size, size), antialias=True))


def _load(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr.astype(np.float32), allow_pickle=False)
    os.replace(tmp, path)


@dataclass
class SoftLabels:
    """The teacher's logits on the clean images then each view (view-major), and the cache's answer."""

    logits: np.ndarray
    cached: bool
    view_size: int


def soft_labels(
    teacher: Teacher,
    files: Sequence[ImageFile],
    views: int,
    seed: int,
    policy: str,
    student_size: int,
    batch_size: int = 32,
) -> SoftLabels:
    """The teacher's logits on ``files`` x ``views``, from the cache or computed once."""
    m = teacher.run.manifest
    size = max(m.input_size, student_size)
    path = (
        backbones.cache_dir()
        / "distill"
        / f"teacher-{teacher.digest}"
        / f"{_views_key(files, views, seed, size, policy)}.npy"
    )
    found = _load(path)
    if found is not None and found.shape[0] == len(files) * views:
        return SoftLabels(found, True, size)
    fn = _teacher_logits_fn(teacher.run.load_model())
    clean = [
        fn(
            np.stack(
                [images.load_array(f.path, m.input_size, m.resize_policy) for f in files[i : i + batch_size]]
            ).astype(np.float32)
        )
        for i in range(0, len(files), batch_size)
    ]
    n_batches = (views - 1) * math.ceil(len(files) / batch_size)
    aug = [
        fn(resize(x, m.input_size))
        for _, x in progress(
            view_batches(files, size, views, seed, policy, batch_size), n_batches, "teacher soft labels"
        )
    ]
    logits = np.concatenate(clean + aug).astype(np.float32)
    _save(path, logits)
    return SoftLabels(logits, False, size)


def student_view_features(
    extractor,
    feature_digest: str,
    files: Sequence[ImageFile],
    views: int,
    seed: int,
    policy: str,
    view_size: int,
    student_size: int,
    batch_size: int = 32,
) -> tuple[np.ndarray, bool]:
    """The student's pooled features on views 1..views-1 (the clean view comes from the feature cache)."""
    if views <= 1:
        return np.zeros((0, 0), np.float32), True
    key = _views_key(files, views, seed, view_size, policy)
    path = backbones.cache_dir() / "distill" / f"student-{feature_digest}" / f"{key}.npy"
    found = _load(path)
    if found is not None and found.shape[0] == len(files) * (views - 1):
        return found, True
    n_batches = (views - 1) * math.ceil(len(files) / batch_size)
    out = [
        np.asarray(extractor.predict(resize(x, student_size), verbose=0, batch_size=batch_size))
        for _, x in progress(
            view_batches(files, view_size, views, seed, policy, batch_size), n_batches, "student features on the views"
        )
    ]
    feats = np.concatenate(out).astype(np.float32)
    _save(path, feats)
    return feats, False


def settings(cfg, teacher: Teacher, labels: SoftLabels) -> dict:
    """The ``distill`` entry of the run's manifest config."""
    return {
        "teacher": teacher.describe(),
        "temperature": cfg.distill_temperature,
        "alpha": cfg.distill_alpha,
        "views": cfg.distill_views,
        "view_size": labels.view_size,
        "soft_labels": "cached" if labels.cached else "computed",
        "loss": LOSS,
    }


def _head_weights(files: Sequence[ImageFile], labels: np.ndarray, n_classes: int, enabled: bool) -> np.ndarray | None:
    """Per-row sample weights from the class weights (Keras' ``class_weight`` reads the
    argmax of 2-D targets, which the combined targets would break)."""
    from .model import class_weights

    cw = class_weights(files, n_classes, enabled)
    return None if cw is None else np.array([cw[int(y)] for y in labels], np.float32)


def features(ctx, pooled, feature_digest: str, train, val, model, strategy, plan, desc):
    """The features workflow's head, trained on the clean features and the views' with the
    teacher's soft labels; copied into ``model``'s softmax ``classes`` layer at the end.

    Args:
        train, val: ``(features, labels, CacheStats)`` of the clean images from the feature cache.
    """
    from .features import CacheStats
    from .phases import FitResult, fit_head

    cfg, n = ctx.cfg, ctx.n_classes
    (x0, y0, s1), (xva, yva, s2) = train, val
    teacher = load_teacher(cfg.teacher)
    labels = soft_labels(teacher, ctx.train_files, cfg.distill_views, cfg.seed, cfg.policy, ctx.size, cfg.batch_size)
    xv, _ = student_view_features(
        pooled,
        feature_digest,
        ctx.train_files,
        cfg.distill_views,
        cfg.seed,
        cfg.policy,
        labels.view_size,
        ctx.size,
        cfg.batch_size,
    )
    xtr = np.concatenate([x0, xv]) if len(xv) else x0
    ytr = np.tile(y0, cfg.distill_views)
    fit = {
        "x": xtr,
        "y": targets(ytr, n, labels.logits),
        "sample_weight": _head_weights(ctx.train_files, ytr, n, cfg.class_weights),
        "validation_data": (xva, targets(yva, n, None)),
    }
    loss = distill_loss(n, cfg.distill_temperature, cfg.distill_alpha)
    history, probs = fit_head(ctx, strategy, model, fit, loss=loss, metrics=[accuracy_metric(n)])
    stats = CacheStats(s1.hits + s2.hits, s1.misses + s2.misses)
    n_seen = len(history.get("loss", [])) * len(xtr)
    result = FitResult(model, plan, history, [0], stats, desc, n_seen, val_probs=probs)
    result.distill = settings(cfg, teacher, labels)
    return result


def fine_tune(ctx, base, model, strategy, plan, desc):
    """The fine-tune workflow on the clean images and the teacher-labelled views.

    The views replace the online augmentation: each epoch draws as many rows as there are
    training images from the shuffled clean + augmented set, so an epoch costs what a plain one does.
    """
    from .model import compile_model, cosine_schedule, unfreeze
    from .phases import FitResult, _merge, fit_phase, smoothed_stopping

    tf, keras = _lazy.tf(), _lazy.keras()
    cfg, n = ctx.cfg, ctx.n_classes
    teacher = load_teacher(cfg.teacher)
    labels = soft_labels(teacher, ctx.train_files, cfg.distill_views, cfg.seed, cfg.policy, ctx.size, cfg.batch_size)
    files = ctx.train_files
    clean = np.stack([images.load_array(f.path, ctx.size, cfg.policy) for f in files])
    batches = view_batches(files, labels.view_size, cfg.distill_views, cfg.seed, cfg.policy, cfg.batch_size)
    aug = [np.clip(resize(x, ctx.size), 0, 255).astype(np.uint8) for _, x in batches]
    x = np.concatenate([clean, *aug])
    y = np.tile(np.array([f.label for f in files], np.int32), cfg.distill_views)
    sw = _head_weights(files, y, n, cfg.class_weights)
    keras.utils.set_random_seed(cfg.seed)
    parts = (x, targets(y, n, labels.logits), sw if sw is not None else np.ones(len(y), np.float32))
    train_ds = (
        tf.data.Dataset.from_tensor_slices(parts)
        .shuffle(len(x), seed=cfg.seed)
        .repeat()
        .batch(cfg.batch_size)
        .map(lambda a, b, c: (tf.cast(a, tf.float32), b, c))
        .prefetch(2)
    )
    val_ds = tfdata.image_dataset(ctx.val_files, ctx.size, batch_size=cfg.batch_size, policy=cfg.policy)
    # validation rows carry no teacher (w = 0): val_loss is the plain cross-entropy
    val_ds = val_ds.map(lambda a, b: (a, tf.concat([tf.one_hot(b, n), tf.zeros_like(tf.one_hot(b, n + 1))], -1)))
    steps = math.ceil(len(files) / cfg.batch_size)
    fit = {"x": train_ds, "validation_data": val_ds, "steps_per_epoch": steps, "shuffle": False}
    loss = distill_loss(n, cfg.distill_temperature, cfg.distill_alpha, cfg.label_smoothing)
    opts = dict(weight_decay=cfg.weight_decay, loss=loss, metrics=[accuracy_metric(n)])
    with strategy.scope():
        student = logits_model(model)
        compile_model(student, cfg.learning_rate, **opts)
    stop = lambda: smoothed_stopping(cfg.patience, cfg.stop_smoothing)  # noqa: E731
    head = fit_phase(student, "head", ctx.work, cfg.epochs, cfg.patience, fit, stop())
    tune: dict = {}
    if cfg.fine_tune_epochs and plan.unfreeze != "0":
        peak = cfg.learning_rate * cfg.fine_tune_lr_factor
        lr = peak
        if cfg.lr_schedule == "cosine":
            lr = cosine_schedule(peak, steps, cfg.fine_tune_epochs, cfg.warmup_epochs)
        with strategy.scope():
            unfreeze(base, plan.unfreeze)
            compile_model(student, lr, **opts)
        tune = fit_phase(student, "fine_tune", ctx.work, cfg.fine_tune_epochs, cfg.patience, fit, stop())
    history, starts = _merge(head, tune)
    epochs = len(history.get("loss", []))
    result = FitResult(model, plan, history, starts, None, desc, epochs * len(files))
    result.distill = settings(cfg, teacher, labels)
    return result
