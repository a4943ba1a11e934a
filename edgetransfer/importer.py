"""Bring your own model: a Keras model trained elsewhere, or a ``.tflite`` / ``.onnx`` from another tool.

A Keras model (``.keras`` through :mod:`edgetransfer.safe_keras`, or a legacy ``.h5`` checked the same
way) becomes a normal run folder: the preprocessing the user trained with is folded in front of it
(``Rescaling``, or a fixed 1x1 convolution where the channels are also reordered to BGR) and a
softmax behind it when it outputs logits, so the run's ``model.keras`` takes RGB [0, 255] and
outputs probabilities exactly like the models our backbones build; it is scored on the held-out
data and ``export`` / ``validate`` / ``check`` read it unchanged.

An exported file from another tool is probed in a child process first
(:func:`edgetransfer.runtime.isolate.probe`), its labels and normalisation read from its metadata
(ours, the standard TFLite Metadata, ONNX metadata properties) or given, and it becomes a run folder
whose only export is that file, with an artifact manifest; the run has no Keras float model, which
its manifest says (``files`` has no ``model``, ``config.imported.float_reference`` is ``None``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import _lazy, formats, metrics, safe_keras, scoring
from . import data as data_lib
from ._version import __version__
from .errors import ConfigError, DataError, UnsafeFileError
from .io import atomic_path, require_writable, sha256_file, write_json
from .records import ArtifactManifest, DataInfo, IOSpec, Metrics, RunManifest
from .training import TrainedModel, rundir

log = logging.getLogger("edgetransfer")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
FILE_SUFFIXES = (".tflite", ".onnx")
# Softmax rows sum to 1 up to float32 rounding; 1e-3 leaves room for fp16 outputs too.
_SUM_TOLERANCE = 1e-3
_FIX_UNSAFE = "re-save the model without Lambda or custom layers (keras.layers only), then import it again"


@dataclass(frozen=True)
class Preprocessing:
    """What the user's code did to RGB [0, 255] pixels before the model: reorder the channels
    (``bgr``), then ``x * scale + offset`` per channel (in the order the model sees them).

    The presets are ``keras.applications.imagenet_utils.preprocess_input``'s modes
    (keras/src/applications/imagenet_utils.py, ``_preprocess_numpy_input``).
    """

    name: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]
    bgr: bool = False
    note: str = ""

    @classmethod
    def from_mean_std(cls, name: str, mean, std, bgr: bool = False, note: str = "") -> Preprocessing:
        mean, std = _three(mean, "mean"), _three(std, "std")
        if min(std) <= 0:
            raise ConfigError(f"--preprocess {name}: std {std} must be positive", fix="give positive std values")
        return cls(name, tuple(1.0 / s for s in std), tuple(-m / s for m, s in zip(mean, std)), bgr, note)

    @property
    def identity(self) -> bool:
        return not self.bgr and self.scale == (1.0,) * 3 and self.offset == (0.0,) * 3

    @property
    def mean(self) -> list[float]:
        return [-o / s for o, s in zip(self.offset, self.scale)]

    @property
    def std(self) -> list[float]:
        return [1.0 / s for s in self.scale]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The same arithmetic in NumPy (for foreign files fed outside the graph, and for tests)."""
        x = np.asarray(x, dtype=np.float32)
        if self.bgr:
            x = x[..., ::-1]
        return x * np.asarray(self.scale, np.float32) + np.asarray(self.offset, np.float32)

    def to_json(self) -> dict:
        """The run manifest's ``preprocess``: mean/std on [0, 255] like our backbones' records, plus the preset."""
        return {
            "mean": self.mean,
            "std": self.std,
            "input_range": [0, 255],
            "channel_order": "BGR" if self.bgr else "RGB",
            "preset": self.name,
            "note": self.note,
        }


def _three(values, what: str) -> tuple[float, float, float]:
    vals = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3:
        raise ConfigError(
            f"--preprocess: {what} has {len(vals)} values (received: {values!r})",
            fix=f"give one {what} or three (one per RGB channel)",
        )
    return (vals[0], vals[1], vals[2])


_MODE_SRC = "keras.applications preprocess_input mode"
PRESETS: dict[str, Preprocessing] = {
    "tf": Preprocessing(
        "tf",
        (1 / 127.5,) * 3,
        (-1.0,) * 3,
        note=f"x / 127.5 - 1 ({_MODE_SRC} 'tf': MobileNet, MobileNetV2, Xception, Inception, NASNet)",
    ),
    "torch": Preprocessing.from_mean_std(
        "torch",
        (123.675, 116.28, 103.53),  # ImageNet mean (0.485, 0.456, 0.406) * 255
        (58.395, 57.12, 57.375),  # ImageNet std (0.229, 0.224, 0.225) * 255
        note=f"x / 255, minus the ImageNet mean, over its std ({_MODE_SRC} 'torch': DenseNet)",
    ),
    "caffe": Preprocessing(
        "caffe",
        (1.0,) * 3,
        (-103.939, -116.779, -123.68),  # BGR ImageNet mean, imagenet_utils.py
        bgr=True,
        note=f"RGB to BGR, minus the ImageNet BGR mean ({_MODE_SRC} 'caffe': ResNet50, VGG16/19)",
    ),
    "efficientnet": Preprocessing(
        "efficientnet",
        (1.0,) * 3,
        (0.0,) * 3,
        note="pixels in [0, 255] go in as they are; the model normalises them itself "
        "(keras.applications EfficientNet/V2, ConvNeXt, MobileNetV3)",
    ),
    "none": Preprocessing("none", (1.0,) * 3, (0.0,) * 3, note="no preprocessing: the model takes RGB [0, 255]"),
}
_SPEC_KEYS = ("scale", "offset", "mean", "std", "order")
_SPEC_HELP = (
    f"a preset ({', '.join(PRESETS)}) or an explicit spec such as 'scale=1/127.5,offset=-1' or "
    "'mean=123.675,116.28,103.53,std=58.395,57.12,57.375' (add 'order=bgr' if your code fed BGR)"
)


def _number(text: str) -> float:
    text = text.strip()
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--preprocess: {text!r} is not a number", fix=f"use {_SPEC_HELP}") from None


def parse_preprocess(text: str | Preprocessing) -> Preprocessing:
    """A preset name or an explicit ``key=values`` spec (keys: scale, offset, mean, std, order).

    Raises:
        ConfigError: unknown preset or key, wrong number of values, scale/offset mixed with mean/std.
    """
    if isinstance(text, Preprocessing):
        return text
    name = text.strip()
    if name.lower() in PRESETS:
        return PRESETS[name.lower()]
    if "=" not in name:
        raise ConfigError(f"unknown --preprocess {text!r}", fix=f"use {_SPEC_HELP}")
    parts = re.split(r"[,;\s]\s*(?=[A-Za-z_]+\s*=)", name)
    spec: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key not in _SPEC_KEYS:
            raise ConfigError(f"--preprocess: unknown key {key!r} in {text!r}", fix=f"use {_SPEC_HELP}")
        spec[key] = value
    order = spec.pop("order", "rgb").strip().lower()
    if order not in ("rgb", "bgr"):
        raise ConfigError(f"--preprocess: order={order!r}", fix="use order=rgb or order=bgr")
    nums = {k: [_number(v) for v in re.split(r"[,;\s]+", s.strip()) if v] for k, s in spec.items()}
    if nums.keys() & {"scale", "offset"} and nums.keys() & {"mean", "std"}:
        raise ConfigError(f"--preprocess {text!r} mixes scale/offset with mean/std", fix="give one pair or the other")
    if "mean" in nums or "std" in nums:
        return Preprocessing.from_mean_std(name, nums.get("mean", [0.0]), nums.get("std", [1.0]), order == "bgr")
    scale, offset = _three(nums.get("scale", [1.0]), "scale"), _three(nums.get("offset", [0.0]), "offset")
    if 0.0 in scale:
        raise ConfigError(f"--preprocess {text!r}: a scale of 0 erases the image", fix="give a non-zero scale")
    return Preprocessing(name, scale, offset, order == "bgr")


# ----------------------------------------------------------------------------- Keras models


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
    config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    safe_keras._walk(config, path)  # the same refusal of Lambda and foreign-module layers as .keras
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
    path = Path(labels_file)
    try:
        labels = tuple(s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the labels ({exc})", path=path, fix="pass a UTF-8 text file, one label a line"
        ) from None
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


# ----------------------------------------------------------------------------- the run folder


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_model` did, for the command's output (the run itself is a :class:`TrainedModel`)."""

    run: TrainedModel
    output: str  # probabilities, logits, binary_probability, binary_logits
    notes: tuple[str, ...] = ()


def _source_info(path: Path) -> dict:
    digest = sha256_file(path) if path.is_file() else ""
    return {"path": str(path.resolve()), "name": path.name, "sha256": digest}


@contextlib.contextmanager
def _work_folder(out: Path) -> Iterator[Path]:
    """``<out>.partial`` under the run lock, renamed to ``out`` when the import completes; removed when it
    fails (an import is seconds of work with nothing to resume, and a refusal must leave nothing behind)."""
    with rundir.claim(out, resume=False, what="import", keep_on_error=False) as partial:
        yield partial


def _manifest(
    path: Path, ds: data_lib.Dataset, labels: tuple[str, ...], size: int, pre: dict, policy: str, imported: dict
) -> RunManifest:
    return RunManifest(
        backbone=f"imported:{path.name}",
        weights=f"imported from {path.name}",
        input_size=size,
        preprocess=pre,
        classes=labels,
        data=DataInfo(str(Path(ds.root).resolve()), ds.fingerprint(), ds.split_source, 0, 0, ds.report.counts),
        config={"imported": imported},
        metrics=Metrics(None),
        resize_policy=policy,
        workflow="imported",
        unfreeze="",
        reason=f"imported with `edgetransfer import` from {path.name}",
        versions=rundir.versions(),
    )


def _scored(manifest: RunManifest, probs: np.ndarray, ho) -> RunManifest:
    s = metrics.scores(probs, ho.y, len(manifest.classes), manifest.backbone)
    m = Metrics(s.accuracy, round(s.loss, 6), len(ho.y), s.per_class, s.confusion)
    data = replace(manifest.data, val_images=len(ho.y), split_source=ho.split)
    return replace(manifest, metrics=m, data=data)


def import_model(
    model: str | Path,
    data_dir: str | Path,
    *,
    labels: str | Path | None = None,
    preprocess: str | Preprocessing | None = None,
    out: str | Path | None = None,
    image_size: int | None = None,
    resize_policy: str = "stretch",
) -> ImportResult:
    """Import a model trained elsewhere as a run folder that ``export`` / ``validate`` / ``check`` read.

    Args:
        model: a ``.keras``, a legacy ``.h5``, or an exported ``.tflite`` / ``.onnx``.
        data_dir: an image folder with the model's classes as sub-folders; its ``val/`` (or ``test/``,
            else the whole folder) is the held-out data the model is scored on.
        labels: a file with one label a line, in output order (default: the folder's class names).
        preprocess: what the training code did to RGB [0, 255] pixels: a preset of
            :data:`PRESETS` (``tf``, ``torch``, ``caffe``, ``efficientnet``, ``none``) or an explicit
            spec (:func:`parse_preprocess`). Required for a Keras model; for a file, read from its
            metadata when absent.
        out: the run folder (default ``runs/<model file stem>``).
        image_size: the input side for a model that takes any size.
        resize_policy: how images are fitted to the input (``stretch``, what
            ``keras.utils.image_dataset_from_directory`` does by default; ``crop``; ``pad``).

    Raises:
        ConfigError, DataError, UnsafeFileError: a model that cannot be imported as given (exit 2);
            the message names the model, what was found and what to pass.
    """
    path = Path(model)
    if not path.exists():
        raise ConfigError("model not found", path=path, fix="pass the path of a .keras, .h5, .tflite or .onnx file")
    out = Path(out) if out is not None else Path("runs") / path.stem
    require_writable(out, "run directory")
    if path.suffix in FILE_SUFFIXES:
        return _import_file(path, Path(data_dir), labels, preprocess, out, resize_policy)
    if path.suffix not in KERAS_SUFFIXES and not path.is_dir():
        raise ConfigError(
            f"unknown model type {path.suffix!r}",
            path=path,
            fix="pass a .keras or .h5 Keras model, or a .tflite / .onnx file",
        )
    if preprocess is None:
        raise ConfigError(
            "which preprocessing was this model trained with? (a Keras model does not say)",
            path=path,
            fix=f"pass --preprocess: {_SPEC_HELP}",
        )
    pre = parse_preprocess(preprocess)
    ds = data_lib.load(data_dir)
    names, labels_from = read_labels(labels, ds.classes)
    user = load_keras(path)
    size = check_io(user, path, image_size)
    imported = {"source": _source_info(path), "preset": pre.name, "labels_from": labels_from}
    imported["float_reference"] = "model"
    manifest = _manifest(path, ds, names, size, pre.to_json(), resize_policy, imported)
    return _write_keras_run(path, user, pre, manifest, out, Path(data_dir))


def _write_keras_run(path: Path, user, pre: Preprocessing, manifest: RunManifest, out: Path, data_dir: Path):
    from .scoring import held_out, reference_probs

    with _work_folder(out) as partial:
        ho = held_out(TrainedModel(partial, manifest), data_dir)
        if not len(ho.y):
            raise DataError("no held-out images", path=data_dir, fix="pass --data with images in each class folder")
        labels_from = manifest.config["imported"]["labels_from"]
        kind = output_kind(user, pre.apply(ho.x[:64]), len(manifest.classes), path, labels_from)
        notes = [f"preprocessing {pre.name!r} folded into the graph: {pre.note or 'x * scale + offset'}"]
        own = _own_normalization(user)
        if own and not pre.identity:
            notes.append(
                f"WARNING: the model starts with its own {own} layer and --preprocess {pre.name} adds another in "
                "front; if your code fed it raw pixels, import it again with --preprocess none"
            )
            log.warning("WARNING: %s: %s", path.name, notes[-1].removeprefix("WARNING: "))
        if kind == "logits":
            notes.append("it outputs logits (a linear last layer, or scores not summing to 1): softmax appended")
        elif kind.startswith("binary"):
            notes.append(
                "one output unit for two labels: "
                + ("sigmoid, then " if kind == "binary_logits" else "")
                + f"[1 - p, p] appended (p is the probability of {manifest.classes[1]!r})"
            )
        model = fold(user, pre, manifest.input_size, kind)
        with atomic_path(partial / "model.keras") as tmp:
            model.save(tmp)
        manifest = replace(manifest, config={"imported": {**manifest.config["imported"], "output": kind}})
        write_json(partial / "manifest.json", manifest.to_json())
        run = TrainedModel(partial, manifest)
        probs, _ = reference_probs(run, ho.x)  # reloaded from model.keras: safe mode accepts what was written
        manifest = _scored(manifest, probs, ho)
        write_json(partial / "manifest.json", manifest.to_json())
    return ImportResult(TrainedModel(out, manifest), kind, tuple(notes))


# ----------------------------------------------------------------------------- foreign .tflite / .onnx files


def standard_tflite_metadata(path: Path) -> dict:
    """Labels and normalisation from a file's standard metadata (TFLite Metadata), ``{}`` when its format has none."""
    reader = formats.for_path(path).standard_metadata_reader_fn()
    return reader(path) if reader is not None else {}


def file_precision(path: Path) -> str:
    """``int8``, ``int16x8``, ``fp16`` or ``fp32``, read from the file by its format."""
    return str(formats.for_path(path).precision_reader_fn()(path))


def file_metadata(path: Path) -> dict:
    """Labels, normalisation, input size and resize policy from a file's metadata: ours
    (``edgetransfer.json`` / the ONNX ``edgetransfer`` property), else the standard TFLite Metadata."""
    from .runtime.base import read_metadata

    meta = read_metadata(path)
    if meta.get("edgetransfer"):
        norm = meta.get("normalization") or {}
        found = {"labels": meta.get("labels"), "source": "edgetransfer metadata"}
        outside = {"mean": norm.get("mean"), "std": norm.get("std")}
        found["normalization"] = None if norm.get("inside_model") else outside
        found["resize_policy"] = (meta.get("input") or {}).get("resize_policy")
        return found
    std = standard_tflite_metadata(path)
    if std:
        return {**std, "source": "TFLite Metadata"}
    if meta.get("labels"):
        return {"labels": meta["labels"], "source": "ONNX metadata"}
    return {}


def input_transform(pre: Preprocessing, spec) -> dict:
    """How [0, 255] RGB pixels become what a foreign file's input takes, as the artifact manifest records it.

    ``pixels``: fed as they are (the runtime quantizes an integer input with its scale and zero point, as for
    our own files). ``normalize``: ``pre`` applied before a float input. ``raw_quantized``: an integer input
    whose quantization encodes the normalised range takes the raw pixel values (MediaPipe Tasks'
    convention for uint8 models); the float batch handed to ``Session.run`` is ``(x - zero_point) * scale``
    so that the runtime's quantization gives back the pixels.
    """
    if pre.identity:
        return {"kind": "pixels"}
    if spec.dtype in ("float32", "float16"):
        return {"kind": "normalize", "scale": list(pre.scale), "offset": list(pre.offset), "bgr": pre.bgr}
    return {"kind": "raw_quantized", "scale": float(spec.scale or 1.0), "zero_point": int(spec.zero_point or 0)}


to_model_input = scoring.to_model_input  # kept here for callers of the import API
to_probabilities = scoring.to_probabilities


def _file_preprocessing(path: Path, preprocess, found: dict) -> Preprocessing:
    if preprocess is not None:
        return parse_preprocess(preprocess)
    norm = found.get("normalization", "absent")
    if norm is None:
        return PRESETS["none"]  # our own metadata: normalisation inside the model
    if isinstance(norm, dict) and norm.get("mean") and norm.get("std"):
        return Preprocessing.from_mean_std(
            "metadata", norm["mean"], norm["std"], note=f"mean {norm['mean']} std {norm['std']} ({found['source']})"
        )
    raise ConfigError(
        f"{path.name} says nothing about its input normalisation (no TFLite Metadata or edgetransfer metadata)",
        path=path,
        fix=f"pass --preprocess: {_SPEC_HELP}; 'none' if it takes RGB [0, 255] as is",
    )


def _import_file(path: Path, data_dir: Path, labels, preprocess, out: Path, resize_policy: str) -> ImportResult:
    from .runtime import isolate, load_session
    from .scoring import held_out, predict

    isolate.probe(path)  # native code meets the file in a child first; raises for a crash or a hang
    found = file_metadata(path)
    session = load_session(path)
    spec = session.input_spec
    size = spec.size
    if size <= 0 or len(spec.shape) != 4 or (spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]) != 3:
        raise ConfigError(
            f"{path.name} takes input {tuple(spec.shape)} ({spec.layout}), not a fixed-size RGB image batch",
            path=path,
            fix="export the file with a fixed [1, S, S, 3] (or [1, 3, S, S]) image input",
        )
    pre = _file_preprocessing(path, preprocess, found)
    ds = data_lib.load(data_dir)
    if labels is None and found.get("labels"):
        names = tuple(found["labels"])
        if names != ds.classes:
            raise DataError(
                f"{path.name}'s labels ({found['source']}) {list(names)} differ from the class folders of --data "
                f"{list(ds.classes)}",
                path=data_dir,
                fix="name the class folders of --data exactly as the model's labels",
            )
        labels_from = found["source"]
    else:
        names, labels_from = read_labels(labels, ds.classes)
    transform = input_transform(pre, spec)
    policy = found.get("resize_policy") or resize_policy
    imported = {"source": _source_info(path), "preset": pre.name, "labels_from": labels_from, "float_reference": None}
    manifest = _manifest(path, ds, names, size, pre.to_json(), policy, imported)
    manifest = replace(manifest, files={"artifact": f"export/{path.name}"})
    with _work_folder(out) as partial:
        ho = held_out(TrainedModel(partial, manifest), data_dir)
        y = predict(session, to_model_input(ho.x, transform), str(path))
        if y.ndim != 2 or y.shape[1] != len(names):
            raise ConfigError(
                f"{path.name} outputs {y.shape[1:]} scores per image, but there are {len(names)} labels "
                f"(from {labels_from})",
                path=path,
                fix="pass --labels FILE with the model's labels in output order, and --data with those class folders",
            )
        outside = y.min() < -1e-6 or y.max() > 1 + 1e-6 or np.abs(y.sum(1) - 1).max() > _SUM_TOLERANCE
        kind = "logits" if outside else "probabilities"
        imported = {**imported, "output": kind, "input_transform": transform, "precision": file_precision(path)}
        manifest = _scored(replace(manifest, config={"imported": imported}), to_probabilities(y, kind), ho)
        art = _write_artifact(path, partial / "export", manifest, spec, imported)
        write_json(partial / "manifest.json", manifest.to_json())
    notes = [f"labels from {labels_from}; preprocessing {pre.name!r} ({transform['kind']})", f"artifact {art}"]
    if kind == "logits":
        notes.append("it outputs logits (scores outside [0, 1] or not summing to 1): scored after a softmax")
    notes.append("no Keras float model: accuracy is the file's own, with no float reference to drop from")
    return ImportResult(TrainedModel(out, manifest), kind, tuple(notes))


def _write_artifact(path: Path, folder: Path, manifest: RunManifest, spec, imported: dict) -> str:
    """The file copied into ``<run>/export`` with its ``.manifest.json`` and the folder's index, the
    way :func:`edgetransfer.exporter.write_artifact` writes them, so ``validate`` / ``check`` open it."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    shutil.copyfile(path, dest)
    fmt = path.suffix.lstrip(".")
    norm = manifest.preprocess
    meta = {
        "edgetransfer": __version__,
        "format": fmt,
        "precision": imported["precision"],
        "labels": list(manifest.classes),
        "backbone": manifest.backbone,
        "source_run": "..",
        "input": {
            "size": manifest.input_size,
            "layout": spec.layout,
            "dtype": spec.dtype,
            "color": "RGB",
            "range": [0, 255],
            "resize_policy": manifest.resize_policy,
            "batch": spec.shape[0] if spec.shape[0] and spec.shape[0] > 0 else None,
        },
        "normalization": {
            "inside_model": imported["input_transform"]["kind"] != "normalize",
            "mean": norm["mean"],
            "std": norm["std"],
            "channel_order": norm["channel_order"],
        },
        "imported": {k: imported[k] for k in ("source", "output", "input_transform", "float_reference")},
    }
    m = ArtifactManifest(
        path=dest.name,
        format=fmt,
        precision=imported["precision"],
        io=IOSpec.from_json(meta["input"], f"{dest.name} metadata"),
        metadata=meta,
        sha256=sha256_file(dest),
        size_bytes=dest.stat().st_size,
        source_run="..",
        source_run_abs=str(folder.parent.with_name(folder.parent.name.removesuffix(".partial")).resolve()),
        source_fingerprint=manifest.data.fingerprint,
        recipe={"precision": imported["precision"], "from": "imported file"},
        converter={"edgetransfer": __version__, "from": "imported", "original": imported["source"]["path"]},
    )
    write_json(dest.with_name(dest.name + ".manifest.json"), m.to_json())
    write_json(
        folder / "manifest.json",
        {"kind": "edgetransfer.export", "schema": 2, "source_run": "..", "artifacts": [dest.name]}
        | {"calibration": None},
    )
    return f"export/{dest.name}"


def describe(result: ImportResult) -> dict:
    """The command's JSON: the run, its accuracy on the held-out data, and what was done."""
    m = result.run.manifest
    return {
        "run": str(result.run.run_dir),
        "backbone": m.backbone,
        "input_size": m.input_size,
        "classes": list(m.classes),
        "output": result.output,
        "held_out": {"images": m.metrics.val_images, "split": m.data.split_source, "accuracy": m.metrics.val_accuracy},
        "float_model": m.files.get("model"),
        "notes": list(result.notes),
    }


__all__ = ["PRESETS", "ImportResult", "Preprocessing", "import_model", "parse_preprocess", "to_model_input"]
