"""Export a trained run to TFLite and ONNX files, one function per format.

Every (format, precision) pair is checked before any work starts; every file is written
under a temporary name and renamed when complete; each gets a ``<file>.manifest.json``
and the folder a ``manifest.json`` listing them all.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from .. import _lazy
from .._version import __version__
from ..errors import EdgeTransferError, ExportError, UnsupportedError
from ..quantize import FORMATS, Calibration, QuantRecipe, calibration_set
from ..train import TrainedModel

SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}


@dataclass(frozen=True)
class ExportedArtifact:
    """One exported file and what it is."""

    path: Path
    format: str
    precision: str
    io: dict
    metadata: dict = field(repr=False)
    sha256: str = ""
    size_bytes: int = 0

    def to_json(self) -> dict:
        return {"path": str(self.path), "format": self.format, "precision": self.precision, "io": self.io,
                "size_bytes": self.size_bytes, "sha256": self.sha256}

    @classmethod
    def from_manifest(cls, path: str | Path) -> "ExportedArtifact":
        """Re-open an artifact from its ``<file>.manifest.json`` (or the file beside it)."""
        path = Path(path)
        mpath = path if path.name.endswith(".manifest.json") else path.with_name(path.name + ".manifest.json")
        d = json.loads(mpath.read_text())
        return cls(mpath.with_name(Path(d["path"]).name), d["format"], d["precision"], d["io"], d["metadata"],
                   d["sha256"], d["size_bytes"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _name(fmt: str, recipe: QuantRecipe, layout: str) -> str:
    tag = recipe.precision
    if fmt == "tflite" and recipe.precision == "int8":
        tag += f"_io{recipe.io_dtype}"
    if fmt == "onnx" and layout == "nchw":
        tag += "_nchw"
    return f"model_{tag}{SUFFIX[fmt]}"


def _metadata(run: TrainedModel, fmt: str, recipe: QuantRecipe, layout: str) -> dict:
    m = run.manifest
    in_dtype = recipe.io_dtype if (fmt == "tflite" and recipe.precision == "int8") else "float32"
    return {
        "edgetransfer": __version__, "format": fmt, "precision": recipe.precision, "labels": run.classes,
        "backbone": m["backbone"], "source_run": str(run.run_dir),
        "input": {"size": run.input_size, "layout": layout.upper(), "dtype": in_dtype, "color": "RGB",
                  "range": [0, 255], "resize_policy": m.get("resize_policy", "crop")},
        # The backbone's normalisation is the first layer of the graph: feed raw RGB pixels.
        "normalization": {"inside_model": True, "mean": [0.0] * 3, "std": [1.0] * 3,
                          "model_applies": m["preprocess"]},
    }


def plan(formats: Sequence[str], recipes: Sequence[QuantRecipe], *, explicit_io: bool = False
         ) -> list[tuple[str, QuantRecipe]]:
    """The (format, recipe) pairs to export; refuses an impossible one before any work.

    ``QuantRecipe.int8()`` defaults to uint8 input, which only TFLite has; for ONNX that
    default becomes float input, unless the user asked for it (``explicit_io``).
    """
    fmts = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    pairs = []
    for fmt in fmts:
        for r in recipes:
            if "all" in formats and r.precision == "int16x8" and fmt == "onnx":
                continue  # --format all: int16x8 applies to TFLite only
            if fmt == "onnx" and r.io_dtype != "float32" and ("all" in formats or not explicit_io):
                r = QuantRecipe(r.precision, "float32", r.per_channel, r.method, r.calibration_size)
            r.check(fmt)
            pairs.append((fmt, r))
    if not pairs:
        raise UnsupportedError("nothing to export", fix="give at least one --format and --precision")
    return pairs


def export(run: TrainedModel | str | Path, formats: Sequence[str] = ("tflite",),
           recipes: Sequence[QuantRecipe] = (QuantRecipe.fp32(),), *, out: str | Path | None = None,
           calibration: str | Path = "auto", layout: str = "nhwc", seed: int = 0,
           explicit_io: bool = False) -> list[ExportedArtifact]:
    """Export ``run`` to every format x recipe.

    Args:
        run: a :class:`TrainedModel` or run directory.
        formats: ``tflite``, ``onnx`` or ``all``.
        recipes: quantization recipes, e.g. ``[QuantRecipe.fp16(), QuantRecipe.int8()]``.
        out: output folder (default ``<run>/export``).
        calibration: ``auto`` or a folder of images, for int8 / int16x8.
        layout: ``nhwc`` or ``nchw`` (ONNX input layout).
        seed: calibration sampling seed.
        explicit_io: the recipes' io types were asked for (an ONNX one is then refused).

    Raises:
        UnsupportedError: a pair the format cannot do (before anything is written).
        ExportError: a converter failed; names the artifact; no partial file is left.
    """
    run = run if isinstance(run, TrainedModel) else TrainedModel.from_dir(run)
    pairs = plan(formats, recipes, explicit_io=explicit_io)
    if layout not in ("nhwc", "nchw"):
        raise UnsupportedError(f"--layout {layout!r}", fix="use nhwc or nchw")
    out = Path(out) if out else run.run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    calib = None
    if any(r.needs_calibration for _, r in pairs):
        n = max(r.calibration_size for _, r in pairs if r.needs_calibration)
        calib = calibration_set(run.manifest, calibration, n, seed=seed)
    model = run.load_model()
    with tempfile.TemporaryDirectory(prefix="et-export-") as tmp:
        sources: dict[str, object] = {}
        arts = [_one(_source(sources, fmt, model, run, layout, Path(tmp)), run, fmt, r, calib, out, layout)
                for fmt, r in pairs]
    _write_index(out, run, arts, calib)
    return arts


def _source(cache: dict, fmt: str, model, run: TrainedModel, layout: str, tmp: Path):
    """Trace or convert the float model once per format, shared by every precision."""
    from . import onnx as onnx_export
    from . import tflite as tflite_export

    if fmt not in cache:
        try:
            cache[fmt] = (tflite_export.Source(model, tmp) if fmt == "tflite"
                          else onnx_export.Source(model, run.input_size, layout, tmp))
        except Exception as exc:
            raise ExportError(f"converting the model to {fmt} failed: {type(exc).__name__}: {str(exc)[:300]}",
                              path=run.model_path, fix="run with --debug for the converter's traceback") from exc
    return cache[fmt]


def _one(source, run: TrainedModel, fmt: str, recipe: QuantRecipe, calib: Calibration | None, out: Path,
         layout: str) -> ExportedArtifact:
    from . import onnx as onnx_export
    from . import tflite as tflite_export

    path = out / _name(fmt, recipe, layout if fmt == "onnx" else "nhwc")
    meta = _metadata(run, fmt, recipe, layout if fmt == "onnx" else "nhwc")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    start = time.perf_counter()
    try:
        (tflite_export if fmt == "tflite" else onnx_export).write(source, recipe, calib, meta, tmp)
        os.replace(tmp, path)
    except EdgeTransferError:
        raise
    except Exception as exc:  # converters raise anything from ValueError to ConverterError
        raise ExportError(f"exporting {path.name} ({fmt} {recipe.precision}) failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300] if str(exc) else ''}", path=path,
                          fix="run with --debug for the converter's traceback; try another precision") from exc
    finally:
        tmp.unlink(missing_ok=True)
    art = ExportedArtifact(path, fmt, recipe.precision, dict(meta["input"]), meta, _sha256(path), path.stat().st_size)
    _write_json(path.with_name(path.name + ".manifest.json"), {
        **art.to_json(), "path": path.name, "metadata": meta, "recipe": asdict(recipe),
        "calibration": {"source": calib.source, "count": len(calib.images)} if calib and recipe.needs_calibration else None,
        "source_run": str(run.run_dir), "source_fingerprint": run.manifest["data"]["fingerprint"],
        "converter": _versions(fmt), "export_seconds": round(time.perf_counter() - start, 2),
    })
    return art


def _versions(fmt: str) -> dict:
    tf = _lazy.tf()
    v = {"edgetransfer": __version__, "tensorflow": tf.__version__}
    if fmt == "onnx":
        v.update({m: _lazy.require(m).__version__ for m in ("tf2onnx", "onnx", "onnxruntime")})
    return v


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def _write_index(out: Path, run: TrainedModel, arts: list[ExportedArtifact], calib: Calibration | None) -> None:
    listed = {p.name[: -len(".manifest.json")] for p in out.glob("*.manifest.json")}
    _write_json(out / "manifest.json", {
        "kind": "edgetransfer.export", "schema": 1, "source_run": str(run.run_dir), "artifacts": sorted(listed),
        "calibration": {"source": calib.source, "count": len(calib.images), "files": list(calib.files)} if calib else None,
    })
