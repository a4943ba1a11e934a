"""``tf.data`` input pipelines and augmentation layers used by training and calibration.

Pixels leave the pipeline as float32 in [0, 255]: each backbone's own preprocessing is
part of the model, so nothing downstream can pick the wrong normalisation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np

from .. import _lazy, images
from ..errors import EdgeTransferError
from . import ImageFile, vanished

# Errors raised while decoding inside ``tf.numpy_function``: TF re-raises them as its own
# OpError with a Python traceback in the message; :func:`input_errors` raises the original.
_FAILURES: list[EdgeTransferError] = []


def _loader(size: int, policy: str):
    def load(path: bytes) -> np.ndarray:
        p = Path(path.decode())
        err: EdgeTransferError
        try:
            return images.load_array(p, size, policy)
        except FileNotFoundError:
            err = vanished(p)
        except EdgeTransferError as exc:
            err = exc
        _FAILURES.append(err)
        raise err

    return load


@contextlib.contextmanager
def input_errors(files: Collection[str | Path]) -> Iterator[None]:
    """Turn a failure to read one of ``files`` during training (deleted or damaged after the
    scan) into the :class:`DataError` naming it, whether raised directly or inside a pipeline."""
    tf = _lazy.tf()
    wanted = {str(f) for f in files}
    _FAILURES.clear()
    try:
        yield
    except FileNotFoundError as exc:
        if str(exc.filename) in wanted:
            raise vanished(exc.filename) from None
        raise
    except tf.errors.OpError:
        if _FAILURES:
            raise _FAILURES[-1] from None
        raise
    finally:
        _FAILURES.clear()


def image_dataset(
    files: Sequence[ImageFile],
    image_size: int,
    *,
    batch_size: int = 32,
    policy: str = "crop",
    shuffle: bool = False,
    seed: int = 0,
    augment=None,
    cache: str | bool = True,
):
    """Build a batched ``tf.data.Dataset`` of ``(pixels float32[0,255], label int32)``.

    Args:
        files: the images (already checked by :func:`edgetransfer.data.load`).
        image_size: square side fed to the model.
        batch_size: batch size.
        policy: resize policy, see :func:`edgetransfer.images.resize`.
        shuffle: reshuffle every epoch (seeded).
        seed: shuffle and augmentation seed.
        augment: a Keras layer applied to training batches, e.g. :func:`augmentation`.
        cache: ``True`` caches decoded images in memory, a path caches them on disk,
            ``False`` decodes every epoch.
    """
    tf = _lazy.tf()
    paths = [str(f.path) for f in files]
    labels = np.array([f.label for f in files], dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    load = _loader(image_size, policy)

    def decode(path, label):
        pixels = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        pixels.set_shape((image_size, image_size, 3))
        return tf.cast(pixels, tf.float32), label

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(max(len(files), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        # One batch at a time: the random ops are stateful, and a parallel map draws their
        # numbers in whatever order its threads run, so the same seed gave a different model
        # on every run (measured: fine-tune losses differed from the first epoch). Sequential
        # costs little: prefetch still overlaps it with the training step.
        ds = ds.map(lambda x, y: (augment(x, training=True), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def augmentation(
    seed: int = 0, *, flip: bool = True, rotation: float = 0.08, zoom: float = 0.1, contrast: float = 0.1
):
    """The default train-time augmentation as Keras preprocessing layers.

    Mild on purpose: transfer learning from ImageNet features on a few hundred images
    gains from flips and small geometric jitter, and loses from strong colour changes.
    """
    keras = _lazy.keras()
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 3))
    return keras.Sequential(layers, name="augmentation")


def _resized_crop(size: int, min_scale: float, seed: int, ratio: tuple[float, float] = (3 / 4, 4 / 3)):
    """Inception-style random resized crop of a batch, as a function ``(x, training) -> x``.

    Each image gets a box of ``min_scale``..1 of its area and an aspect ratio in ``ratio``
    (log-uniform), resized back to ``size`` (Szegedy et al. 2015). The ImageNet recipe uses
    0.08..1; fine-tuning on a few hundred photos keeps more of the object (0.5 by default).
    """
    tf = _lazy.tf()

    def crop(x, training: bool = True):
        if not training or min_scale >= 1:
            return x
        n = tf.shape(x)[0]
        area = tf.random.uniform((n,), min_scale, 1.0, seed=seed)
        log_r = tf.random.uniform((n,), np.log(ratio[0]), np.log(ratio[1]), seed=seed + 1)
        r = tf.exp(log_r)
        h = tf.minimum(tf.sqrt(area / r), 1.0)
        w = tf.minimum(tf.sqrt(area * r), 1.0)
        y0 = tf.random.uniform((n,), 0, 1, seed=seed + 2) * (1 - h)
        x0 = tf.random.uniform((n,), 0, 1, seed=seed + 3) * (1 - w)
        boxes = tf.stack([y0, x0, y0 + h, x0 + w], axis=1)
        return tf.image.crop_and_resize(x, boxes, tf.range(n), (size, size))

    return crop


def photo_augmentation(size: int, seed: int = 0, *, crop_scale: float = 0.5):
    """The fine-tune augmentation for photos: random resized crop, horizontal flip, a small
    rotation (+-0.05 turn = 18 degrees) and mild brightness/contrast/saturation jitter.

    Colour jitter stays small (0.1-0.2, below the ImageNet recipes' 0.4): the classes in
    small photo datasets often differ in colour, as ants and bees do.
    """
    keras = _lazy.keras()
    crop = _resized_crop(size, crop_scale, seed)
    rest = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed + 10),
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 11),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 12),
            keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=seed + 13),
            keras.layers.RandomSaturation((0.4, 0.6), value_range=(0, 255), seed=seed + 14),
        ],
        name="photo_augmentation",
    )

    def augment(x, training: bool = True):
        return tf_clip(rest(crop(x, training), training=training))

    return augment


def tf_clip(x):
    """Keep augmented pixels in the pipeline's [0, 255] contract."""
    return _lazy.tf().clip_by_value(x, 0.0, 255.0)
