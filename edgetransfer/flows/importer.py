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
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import data as data_lib
from .._version import __version__
from ..errors import ConfigError, DataError
from ..evaluation import heldout as scoring
from ..evaluation.accuracy import Evaluator, open_session
from ..exporter import formats
from ..io import atomic_path, require_regular_file, require_writable, sha256_file, write_json
from ..records import ArtifactManifest, DataInfo, IOSpec, Metrics, RunManifest
from ..training import TrainedModel, rundir
from .import_keras import _SUM_TOLERANCE, _own_normalization, check_io, fold, load_keras, output_kind, read_labels
from .import_preprocess import _SPEC_HELP, PRESETS, Preprocessing, parse_preprocess

log = logging.getLogger("edgetransfer")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
# Flatbuffers and protobuf files stop at 2 GiB; a Keras classifier is far below 4 GiB
MAX_MODEL_BYTES = 4 << 30
FILE_SUFFIXES = (".tflite", ".onnx")


# ----------------------------------------------------------------------------- Keras models


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


def _scored(manifest: RunManifest, probs: np.ndarray, ev: Evaluator) -> RunManifest:
    """The run's held-out metrics, scored by the evaluator that made ``probs``."""
    ho = ev.held
    s = ev.metrics_of(probs, manifest.backbone)
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
    if not path.is_dir():  # a FIFO would block the first read, /dev/zero never ends (issue 37)
        require_regular_file(path, "model", MAX_MODEL_BYTES)
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
    with _work_folder(out) as partial:
        ho = Evaluator(TrainedModel(partial, manifest), data_dir).held
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
        ev = Evaluator(TrainedModel(partial, manifest), data_dir, held=ho)
        probs = ev.reference_probs()  # reloaded from model.keras: safe mode accepts what was written
        assert probs is not None  # the folded model.keras was written just above
        manifest = _scored(manifest, probs, ev)
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
    from ..runtime.base import read_metadata

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
    from ..runtime import isolate

    isolate.probe(path)  # native code meets the file in a child first; raises for a crash or a hang
    found = file_metadata(path)
    session = open_session(path)
    spec = session.input_spec
    size = spec.size
    if size <= 0 or len(spec.shape) != 4 or (spec.shape[3] if spec.layout == "NHWC" else spec.shape[1]) != 3:
        raise ConfigError(
            f"{path.name} takes input {tuple(spec.shape)} ({spec.layout}), not a fixed-size RGB image batch",
            path=path,
            fix="export the file with a fixed [1, S, S, 3] (or [1, 3, S, S]) image input",
        )
    outputs = getattr(session, "outputs", 1)
    if outputs != 1:  # the runtimes read the first output: a second one would be ignored silently
        raise ConfigError(
            f"{path.name} has {outputs} outputs; a classifier has one (the scores of each image)",
            path=path,
            fix="export the model with its class scores as its only output",
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
        ev = Evaluator(TrainedModel(partial, manifest), data_dir)
        y = ev.outputs(session, transform, str(path))
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
        manifest = _scored(replace(manifest, config={"imported": imported}), to_probabilities(y, kind), ev)
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
