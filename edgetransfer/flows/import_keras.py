"""An outside Keras model read safely and checked: input and output shape, labels, the last activation, folding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import _lazy, safe_keras
from ..errors import ConfigError, DataError, UnsafeFileError
from ..io import label_problem, require_regular_file
from .import_preprocess import Preprocessing

# 10,000 labels of 100 bytes are 1 MB: a labels file many times that is another file
MAX_LABELS_BYTES = 16 << 20


def load_keras(path: Path):  # -> keras.Model
    """A ``.keras`` through :func:`safe_keras.load_model`; a legacy ``.h5`` after the same config checks
    (its ``model_config`` attribute), then Keras with ``safe_mode=True``. Neither runs code from the file."""
    if path.is_dir():
        raise ConfigError(
            "a SavedModel folder cannot be loaded as a Keras model (Keras 3 reads .keras and .h5 only)",
            path=path,
            fix="in the code that made it, save the model with model.save('model.keras'); or convert it with "
            "tf.lite.TFLiteConverter.from_saved_model and import the .tflite",
        )
    try:
        if path.suffix == ".keras":
            return safe_keras.load_model(path)
        return _load_h5(path)
    except UnsafeFileError as exc:
        raise UnsafeFileError(exc.problem.replace("model.keras", path.name), path=path, fix=_FIX_UNSAFE) from None


def _load_h5(path: Path):
    h5py = _lazy.require("h5py")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise ConfigError(
            f"not a readable HDF5 file ({exc})", path=path, fix="pass the file model.save wrote"
        ) from None
    if raw is None:
        raise ConfigError(
            "this .h5 holds weights only (no model_config)",
            path=path,
            fix="save the whole model (model.save('model.keras')), not save_weights",
        )
    _check_h5_config(raw, path)
    keras = _lazy.keras()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError/TypeError/KeyError for what it cannot rebuild
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"Keras could not load the model ({type(exc).__name__}: {text})",
            path=path,
            fix="load it in the code that trained it and save it again with model.save('model.keras')",
        ) from None


def _check_h5_config(raw, path: Path) -> None:
    """The ``model_config`` attribute parsed and walked like a ``.keras`` config (the same refusal of
    Lambda and foreign-module layers); garbage, invalid UTF-8 or 100,000-deep nesting is exit 2,
    not an internal error (issue 37)."""
    if raw is not None and not isinstance(raw, (bytes, str)):  # h5py gives arrays for non-text attributes
        raw = raw.tobytes() if hasattr(raw, "tobytes") else None
    fix = "save the whole model again with model.save('model.keras') in the code that trained it"
    if len(raw or b"") > safe_keras.MAX_CONFIG_BYTES:
        raise UnsafeFileError(f"its model_config is over {safe_keras.MAX_CONFIG_BYTES:,} bytes", path=path, fix=fix)
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw or "")
    except (UnicodeDecodeError, ValueError) as exc:
        why = f"{type(exc).__name__}: {str(exc)[:120]}"
        raise ConfigError(f"its model_config is not JSON ({why})", path=path, fix=fix) from None
    except RecursionError:
        raise UnsafeFileError("its model_config is nested too deeply", path=path, fix=fix) from None
    if not isinstance(config, dict):
        raise ConfigError(f"its model_config is a JSON {type(config).__name__}, not a model", path=path, fix=fix)
    try:
        safe_keras._walk(config, path)
    except RecursionError:
        raise UnsafeFileError("its model_config is nested too deeply", path=path, fix=fix) from None


def _shape(t) -> tuple:
    return tuple(None if d is None else int(d) for d in t.shape)


def check_io(model, path: Path, image_size: int | None) -> int:
    """The square input side of a one-image-in, one-score-row-out classifier.

    Raises:
        ConfigError: several inputs or outputs, an input that is not ``[N, H, W, 3]``, a non-square or
            unknown size without ``--image-size``, an ``--image-size`` the model does not take, or an
            output that is not ``[N, classes]``.
    """
    ins, outs = list(model.inputs), list(model.outputs)
    fix_one = "import a classifier with one image input and one output of class scores (build a keras.Model "
    if len(ins) != 1 or len(outs) != 1:
        found = (
            ", ".join(f"{t.name} {_shape(t)}" for t in ins)
            if len(ins) != 1
            else ", ".join(f"{t.name} {_shape(t)}" for t in outs)
        )
        what = f"{len(ins)} inputs" if len(ins) != 1 else f"{len(outs)} outputs"
        raise ConfigError(f"{path.name} has {what} ({found})", path=path, fix=fix_one + "from the ones you need)")
    shape, out = _shape(ins[0]), _shape(outs[0])
    if len(shape) != 4 or shape[-1] != 3:
        raise ConfigError(
            f"{path.name} takes input {shape}, not a batch of RGB images [N, H, W, 3] (channels last)",
            path=path,
            fix="import an image classifier whose input is [N, H, W, 3]; a channels-first or grayscale "
            "model needs a 3-channel channels-last input layer in front",
        )
    if len(out) != 2:
        raise ConfigError(
            f"{path.name} outputs {out}, not one row of class scores per image [N, classes]",
            path=path,
            fix="end the model with a pooling layer and a Dense(classes) head",
        )
    h, w = shape[1], shape[2]
    if h is not None and w is not None and h != w:
        raise ConfigError(
            f"{path.name} takes {h}x{w} images; exported files take square images",
            path=path,
            fix="rebuild the model with input_shape=(S, S, 3) and copy the weights over (convolutions do not "
            "depend on the size)",
        )
    fixed = h or w
    if fixed and image_size and image_size != fixed:
        raise ConfigError(
            f"--image-size {image_size}, but {path.name} takes {fixed}x{fixed} images",
            path=path,
            fix=f"drop --image-size (or pass {fixed})",
        )
    size = fixed or image_size
    if not size:
        raise ConfigError(
            f"{path.name} takes images of any size ({shape}), so the size it was trained at is unknown",
            path=path,
            fix="pass --image-size N (the image_size you trained with)",
        )
    if not 8 <= size <= 4096:
        raise ConfigError(
            f"input size {size} is not an image size", path=path, fix="pass --image-size between 8 and 4096"
        )
    return int(size)


def read_labels(labels_file: str | Path | None, classes: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """``(labels, where from)``: the ``--labels`` file (one per line) or the data folder's class names."""
    if labels_file is None:
        return classes, "the class folders of --data"
    path = require_regular_file(labels_file, "labels file", MAX_LABELS_BYTES)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the labels ({exc})", path=path, fix="pass a UTF-8 text file, one label a line"
        ) from None
    # "\n" only: str.splitlines() would also split a label at U+2028, U+0085 or a form feed, and a
    # reader of labels.txt splits lines differently; such a label is refused, not cut in two
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n")]
    for number, line in enumerate(lines, 1):
        why = label_problem(line) if line else None
        if why:
            raise ConfigError(
                f"line {number} of the labels file, {line!r}, {why}: labels.txt holds one label a line",
                path=path,
                fix="one plain label a line (no control characters, line or paragraph separators, or '/')",
            )
    labels = tuple(ln for ln in lines if ln)
    if len(set(labels)) != len(labels) or not labels:
        raise ConfigError("the labels file is empty or repeats a label", path=path, fix="one distinct label a line")
    if labels != classes:
        raise DataError(
            f"--labels {list(labels)} differ from the class folders of --data {list(classes)}",
            path=path,
            fix="name the class folders exactly as the labels (the held-out images are scored against them)",
        )
    return labels, str(path)


def _last_activation(model) -> str:
    layer = model.layers[-1]
    while hasattr(layer, "layers") and layer.layers:  # a nested Sequential/Functional ends the model
        layer = layer.layers[-1]
    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", str(act)) if act is not None else ""


def _own_normalization(model) -> str:
    """The first layer's class when the model normalises its own input (Rescaling, Normalization), else ''."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    while layers and hasattr(layers[0], "layers") and layers[0].layers:  # a nested base model comes first
        layers = [layer for layer in layers[0].layers if type(layer).__name__ != "InputLayer"]
    kind = type(layers[0]).__name__ if layers else ""
    return kind if kind in ("Rescaling", "Normalization") else ""


def output_kind(model, x: np.ndarray, n_labels: int, path: Path, labels_from: str) -> str:
    """``probabilities``, ``logits``, ``binary_probability`` or ``binary_logits`` (one sigmoid unit, 2 labels).

    Logits: a last layer with a linear activation, or on the probe batch a value outside [0, 1] or a
    row that does not sum to 1.

    Raises:
        ConfigError: the output width does not match the labels.
    """
    y = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    width = y.shape[-1]
    linear = _last_activation(model) in ("linear", "")
    outside = bool(y.min() < -1e-6 or y.max() > 1 + 1e-6)
    if width == 1 and n_labels == 2:
        return "binary_logits" if linear or outside else "binary_probability"
    if width != n_labels:
        raise ConfigError(
            f"{path.name} outputs {width} scores per image, but there are {n_labels} labels (from {labels_from})",
            path=path,
            fix=f"pass --labels FILE with the model's {width} labels in output order (and --data with those class "
            "folders), or import the model trained on these classes",
        )
    sums = bool(np.abs(y.sum(axis=1) - 1).max() > _SUM_TOLERANCE)
    return "logits" if linear or outside or sums else "probabilities"


def fold(model, pre: Preprocessing, size: int, kind: str):  # -> keras.Model
    """``model`` behind ``pre`` (RGB [0, 255] in) and, for logits, a softmax (probabilities out).

    A plain rescale is a ``Rescaling`` layer, exactly as our backbones put theirs in front
    (:mod:`edgetransfer.backbones._keras_app`); a BGR reorder is a frozen 1x1 ``Conv2D`` whose kernel is
    the permutation times the scale, so no code-carrying layer is needed (a ``Lambda`` would be refused on load).
    """
    keras = _lazy.keras()
    L = keras.layers
    inp = keras.Input((size, size, 3), name="image")
    x = inp
    if pre.bgr:
        conv = L.Conv2D(3, 1, name="preprocess", trainable=False)
        x = conv(x)
        kernel = np.zeros((1, 1, 3, 3), np.float32)
        for out_ch in range(3):
            kernel[0, 0, 2 - out_ch, out_ch] = pre.scale[out_ch]  # output channel c reads input channel 2 - c
        conv.set_weights([kernel, np.asarray(pre.offset, np.float32)])
    elif not pre.identity:
        x = L.Rescaling(list(pre.scale), offset=list(pre.offset), name="preprocess")(x)
    y = model(x)
    if kind == "logits":
        y = L.Softmax(name="probabilities")(y)
    elif kind.startswith("binary"):
        p = L.Activation("sigmoid", name="sigmoid")(y) if kind == "binary_logits" else y
        y = L.Concatenate(name="probabilities")([L.Rescaling(-1.0, offset=1.0, name="complement")(p), p])
    return keras.Model(inp, y, name="imported")


# Softmax rows sum to 1 up to float32 rounding; 1e-3 leaves room for fp16 outputs too.
_SUM_TOLERANCE = 1e-3


_FIX_UNSAFE = "re-save the model without Lambda or custom layers (keras.layers only), then import it again"
