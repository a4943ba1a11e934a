"""The Keras side of a classifier: strategy, the model around a backbone, compile, unfreeze."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

from .. import _lazy
from ..data import ImageFile
from .cluster import Cluster, wait_for_peers

INPUT_NAME = "image"


def strategy_for(name: str, cluster: Cluster | None = None, timeout: float = 120.0):
    """``(tf.distribute strategy, description)``: multi-worker from TF_CONFIG, mirrored
    over several GPUs (or logical CPUs when asked), else the default single device.

    Args:
        name: ``auto``, ``default`` or ``mirrored``.
        cluster: the multi-worker cluster (from :func:`.cluster.from_env`); its peers are
            waited for, at most ``timeout`` seconds, before the strategy is built.
    """
    tf = _lazy.tf()
    if cluster is not None:  # before anything starts TF's runtime: collectives are set up at startup
        wait_for_peers(cluster, timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        n = len(cluster.addresses)
        return strategy, f"multi-worker mirrored (TF_CONFIG): {n} workers, {strategy.num_replicas_in_sync} replicas"
    if name == "auto" and os.environ.get("TF_CONFIG"):  # a one-worker cluster
        return tf.distribute.MultiWorkerMirroredStrategy(), "multi-worker mirrored (TF_CONFIG)"
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices), f"mirrored over {len(devices)} devices"
    return tf.distribute.get_strategy(), f"single device ({'GPU' if gpus else 'CPU'})"


def classifier(base, n_classes: int, dropout: float, size: int, name: str):  # -> keras.Model
    """``base`` + global pooling + dropout + a softmax layer (float32 even under mixed precision)."""
    keras = _lazy.keras()
    inp = keras.Input((size, size, 3), name=INPUT_NAME)
    # training=False keeps BatchNorm in inference mode even once the base is unfrozen, so
    # the small fine-tuning batches do not wreck the ImageNet statistics.
    x = base(inp, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inp, out, name=name)


def compile_model(
    model, lr, *, label_smoothing: float | None = None, weight_decay: float = 0.0, loss=None, metrics=None
) -> None:
    """Compile for integer labels (``label_smoothing=None``) or one-hot labels with smoothing.

    Args:
        model: the Keras model.
        lr: a learning rate or a ``keras.optimizers.schedules.LearningRateSchedule``.
        label_smoothing: ``None`` for sparse labels and plain cross-entropy; else the labels
            are one-hot and ``CategoricalCrossentropy(label_smoothing=...)`` is used
            (``SparseCategoricalCrossentropy`` has no smoothing).
        weight_decay: > 0 uses AdamW (decoupled decay; biases and BatchNorm excluded), else Adam.
        loss, metrics: given, they replace the above (distillation's combined targets, distill.py).
    """
    keras = _lazy.keras()
    if weight_decay > 0:
        opt = keras.optimizers.AdamW(lr, weight_decay=weight_decay)
        # Decay only kernels: biases and BatchNorm scales/offsets are not weights to shrink
        # (Loshchilov & Hutter 2019 and common practice, e.g. timm's no_weight_decay).
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    else:
        opt = keras.optimizers.Adam(lr)
    if loss is not None:
        model.compile(optimizer=opt, loss=loss, metrics=metrics)
        return
    if label_smoothing is None:
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    model.compile(optimizer=opt, loss=loss, metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


def cosine_schedule(peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: int):
    """Linear warm-up from 0 to ``peak`` over ``warmup_epochs``, then cosine decay to 0.

    Warm-up after unfreezing keeps the first large gradients from the new head off the
    pretrained layers (Goyal et al. 2017); cosine decay follows Loshchilov & Hutter 2017.
    """
    keras = _lazy.keras()
    warm = max(0, min(warmup_epochs, epochs - 1)) * steps_per_epoch
    decay = max(1, epochs * steps_per_epoch - warm)
    if not warm:
        return keras.optimizers.schedules.CosineDecay(peak, decay)
    return keras.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=peak, warmup_steps=warm)


def class_weights(files: Sequence[ImageFile], n_classes: int, enabled: bool) -> dict | None:
    """Inverse-frequency weights, so a 3:1 imbalance does not become a 3:1 bias."""
    if not enabled:
        return None
    counts = Counter(f.label for f in files)
    total = sum(counts.values())
    return {c: total / (n_classes * counts[c]) for c in range(n_classes) if counts[c]}


def unfreeze(base, depth: str) -> int:
    """Make the top ``depth`` layers (or ``all``) trainable; returns how many hold weights.

    BatchNormalization layers stay frozen: in Keras 3 a trainable BN layer normalises with
    the batch statistics inside ``fit`` even when its model was called with
    ``training=False`` (measured: at learning rate 0 the training loss jumped from 0.93 to
    1.26), and a frozen one runs in inference mode (Keras BatchNormalization docs, "About
    setting layer.trainable = False on a BatchNormalization layer").
    """
    keras = _lazy.keras()
    base.trainable = True
    layers = base.layers
    keep = 0 if depth == "all" else max(0, len(layers) - int(depth))
    for i, layer in enumerate(layers):
        layer.trainable = i >= keep and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in layers if layer.trainable and layer.weights)
