"""Quantization-aware training on Keras 3: a few epochs of fine-tuning against the int8 files' own grid.

tensorflow-model-optimization's QAT rejects Keras 3 models (tensorflow/model-optimization#1270, #1119), so the
run's model is fine-tuned through :func:`.simulate.quant_sim`: its BatchNormalization folded as the converters
fold it, its folded weights fake-quantized per output channel (symmetric, narrow range) and every activation
tensor per tensor (asymmetric) with ``keras.quantizers.fake_quant_with_min_max_vars`` (straight-through
gradients). Activation ranges are the float model's min/max on the calibration images, refreshed before each
epoch (:func:`.simulate.observe`): the ranges the int8 writers measure when they write the file, so the weights
learn to sit well on the grid they ship on. BatchNormalization stays frozen (its moving statistics are what
the converters fold; :func:`edgetransfer.training.model.unfreeze` says why Keras 3 BN must not train here).

The data are the run's training split (calibration images are drawn from it too, never from the held-out
split the doctor and ``validate`` measure on). The fine-tuned weights are the run model's own layers: the int8
files of every format are then written from that one model by the formats' int8 writers, calibrated on the same
images, so each file is integer end to end exactly as a plain int8 file is.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from ... import _lazy, images
from ... import data as data_lib
from ...errors import ConfigError, DataError
from ...records.recipe import MAX_QAT_EPOCHS as MAX_EPOCHS
from .calibration import Calibration
from .simulate import observe, quant_sim

log = logging.getLogger("edgetransfer")
# QAT fine-tunes a trained model: a small constant rate (Jacob et al. 2018 and the TF QAT guide fine-tune at the
# end of training; 1e-4 with Adam measured best of 3e-5/1e-4/3e-4 on digits Lite0 64 px, benchmarks/quant_doctor.py).
LEARNING_RATE = 1e-4
BATCH_SIZE = 32
MAX_IMAGES = 4000  # the training split held in memory: 4000 images at 224 px are 2.4 GB of float32
DEFAULT_EPOCHS = 3  # `export --qat` without --qat-epochs: digits Lite0 64 px held float accuracy after 3


@dataclass(frozen=True)
class QATRecord:
    """What a QAT fine-tune did: written into each file's manifest (``recipe.qat``) and checked on replay."""

    epochs: int
    images: int
    data_digest: str  # sha256 of the training images as fed (uint8-rounded), so a replay can say it differs
    seconds: float
    learning_rate: float
    batch_size: int
    seed: int
    loss: tuple[float, ...] = ()  # training loss per epoch

    def to_json(self) -> dict:
        return {**asdict(self), "loss": list(self.loss)}


def check_epochs(epochs) -> int:
    """``epochs`` as a number of QAT epochs (1 to :data:`MAX_EPOCHS`), else a ConfigError."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ConfigError(
            f"--qat-epochs {epochs!r}: not a whole number from 1 to {MAX_EPOCHS}",
            fix="QAT fine-tunes a trained model: 2 to 5 epochs is typical (e.g. --qat-epochs 3)",
        )
    return epochs


def training_images(manifest, limit: int = MAX_IMAGES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The run's training split as (images [0, 255] RGB float32, labels), at most ``limit`` (seeded sample)."""
    root = manifest.data.root
    cfg = manifest.config
    try:
        ds = data_lib.load(root, val_split=cfg.get("val_split"), seed=cfg.get("seed", 0))
    except DataError as exc:
        raise DataError(
            f"QAT fine-tunes on the run's training data, which cannot be read ({exc.problem})",
            path=root,
            fix="restore the run's data folder, or export without --qat",
        ) from None
    files = list(ds.split("train") or ds.files)
    if len(files) > limit:
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]
    x, y = [], []
    for f in files:
        try:
            x.append(images.load_array(f.path, manifest.input_size, manifest.resize_policy))
            y.append(f.label)
        except DataError:
            continue  # `data inspect` reports it; training skipped it too
    if not x:
        raise DataError("no training image could be read for QAT", path=root, fix="run `edgetransfer data inspect`")
    return np.stack(x).astype(np.float32), np.asarray(y, np.int64)


def data_digest(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256(np.round(x).astype(np.uint8).tobytes())
    h.update(y.astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def fine_tune(
    run,
    model,
    calibration: Calibration,
    epochs: int,
    *,
    learning_rate: float = LEARNING_RATE,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    simulate: bool = True,
) -> QATRecord:
    """Fine-tune ``model`` (the run's Keras model, changed in place) for ``epochs`` with fake quantization.

    Args:
        run: the TrainedModel (its manifest says where the training split is).
        model: the Keras model to train; its layers get the QAT weights.
        calibration: the images whose min/max set the activation ranges (the writers' calibration set).
        epochs: QAT epochs. data: (x, y) to train on instead of the run's training split (tests).
        simulate: False fine-tunes the float model the same way without fake quantization (the baseline
            whose wall time and accuracy QAT is compared with, benchmarks/quant_integer.py).
    """
    keras = _lazy.keras()
    check_epochs(epochs)
    x, y = data if data is not None else training_images(run.manifest, seed=seed)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    for layer in _all_layers(model):
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    sim = quant_sim(model) if simulate else None
    trained = sim.model if sim is not None else model
    steps = max(1, int(np.ceil(len(x) / batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)
    trained.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy")

    class Ranges(keras.callbacks.Callback):  # type: ignore[name-defined]  # keras is lazy
        def on_epoch_begin(self, epoch, logs=None):
            if sim is not None:  # the weights moved: the writers' ranges move with them
                observe(sim, calibration.images)

    hist = trained.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[Ranges()])
    seconds = round(time.perf_counter() - start, 1)
    loss = tuple(round(float(v), 4) for v in hist.history.get("loss", ()))
    log.info("QAT: %d epochs on %d images in %.0f s (loss %s)", epochs, len(x), seconds, loss)
    return QATRecord(epochs, len(x), data_digest(x, y), seconds, learning_rate, batch_size, seed, loss)


def _all_layers(model) -> list:
    out = [model]
    for layer in getattr(model, "layers", ()):
        out += _all_layers(layer) if getattr(layer, "layers", None) else [layer]
    return out
