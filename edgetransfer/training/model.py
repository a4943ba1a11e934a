"""The Keras side of a classifier: strategy, the model around a backbone, compile, unfreeze."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

from .. import _lazy
from ..data import ImageFile

INPUT_NAME = "image"


def strategy_for(name: str):  # -> (tf.distribute.Strategy, str)
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


def compile_model(model, lr: float) -> None:
    keras = _lazy.keras()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def class_weights(files: Sequence[ImageFile], n_classes: int, enabled: bool) -> dict | None:
    """Inverse-frequency weights, so a 3:1 imbalance does not become a 3:1 bias."""
    if not enabled:
        return None
    counts = Counter(f.label for f in files)
    total = sum(counts.values())
    return {c: total / (n_classes * counts[c]) for c in range(n_classes) if counts[c]}


def unfreeze(base, depth: str) -> int:
    """Make the top ``depth`` layers (or ``all``) trainable; returns how many hold weights."""
    base.trainable = True
    layers = base.layers
    keep = 0 if depth == "all" else max(0, len(layers) - int(depth))
    for i, layer in enumerate(layers):
        layer.trainable = i >= keep
    return sum(1 for layer in layers if layer.trainable and layer.weights)
