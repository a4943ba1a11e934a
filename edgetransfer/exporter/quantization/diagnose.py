"""Where an int8 file's error comes from: per tensor, against its float model, with the accuracy of fixing it.

``edgetransfer quant diagnose FILE`` (and the note ``export --max-accuracy-drop`` adds when no recipe meets
the bound): the float model the file was exported from (its ``<file>.manifest.json`` names the run) is
traced again in the file's format and run beside the int8 file on held-out images; every activation tensor
both graphs have gets its signal-to-noise ratio and cosine against the float tensor, and the error its own op
adds (the format's ``tensor_diagnosis`` capability). Worst first by the error added; for the top few, the
file is written again from its own recipe with that op left in float, and with that tensor at 16 bits where
the format mixes activation widths (ONNX), and scored on the held-out data: the effect is measured, not
guessed. The Keras layer each tensor came from is read from the converter's tensor names.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ...errors import ConfigError, DataError, EdgeTransferError, ExportError, UnsupportedError
from ...evaluation.accuracy import Evaluator
from ...io import sha256_file
from ...records import ArtifactManifest, QuantDiagnosis, RecipeFile, TensorDiagnosis
from ...records.run import TrainedModel
from .. import formats
from .calibration import calibration_set
from .recipe import QuantRecipe

log = logging.getLogger("edgetransfer")
IMAGES = 32  # per-tensor error is a sum over every activation value: 32 images rank tensors stably (doctor)
TOP = 5
_SEED = re.compile(r"\(seed (\d+)\)")
_SCOPE_SUFFIX = re.compile(r"_\d+$")  # Keras 3 name scopes append _1 to a layer's name (stem_conv_1)


def keras_layers(model) -> dict[str, int]:
    """Every layer name of a Keras model, nested models' layers included, in model order (name -> rank)."""
    names: dict[str, int] = {}

    def walk(m) -> None:
        for layer in m.layers:
            names.setdefault(layer.name, len(names))
            if hasattr(layer, "layers"):
                walk(layer)

    walk(model)
    return names


def layer_of(tensor: str, layers: dict[str, int], containers: frozenset[str] = frozenset()) -> str:
    """The Keras layer(s) a converter's tensor or node name came from: per ``;``-joined part (TFLite joins
    fused ops' names), the deepest ``/`` segment that names a layer (exactly, or without the ``_1`` a Keras
    name scope adds); nested models (``containers``) are skipped. ``""`` when none matches."""
    found = set()
    for part in tensor.split(";"):
        hit = ""
        for seg in part.split("/"):
            for cand in (seg, _SCOPE_SUFFIX.sub("", seg)):
                if cand in layers and cand not in containers:
                    hit = cand
                    break
        if hit:
            found.add(hit)
    return ", ".join(sorted(found, key=layers.__getitem__))


def open_file(path: str | Path) -> tuple[Path, ArtifactManifest]:
    """The int8 file and its manifest; anything else is a clear error naming the file (exit 2)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "file not found", path=path, fix="pass an int8 .tflite or .onnx file `edgetransfer export` wrote"
        )
    spec = formats.for_path(path)
    mpath = path.with_name(path.name + ".manifest.json")
    if not mpath.is_file():
        raise DataError(
            "no <file>.manifest.json beside the file, so its float model (the run it was exported from) and its "
            "recipe are unknown",
            path=path,
            fix="diagnose a file written by `edgetransfer export`, with its .manifest.json beside it",
        )
    m = ArtifactManifest.read(mpath)
    if sha256_file(path) != m.sha256:
        raise DataError(
            f"the file does not match its manifest (sha256 differs from {mpath.name})",
            path=path,
            fix="re-export it, or copy the file and its .manifest.json together",
        )
    if m.precision != "int8":
        raise ConfigError(
            f"a {m.precision} file: only int8 files have quantized tensors to diagnose",
            path=path,
            fix=f"export with --precision int8 and pass that file (model_int8*{spec.suffix})",
        )
    if spec.tensor_diagnosis_fn() is None:
        raise UnsupportedError(
            f"{spec.name} files have no per-tensor diagnosis", path=path, fix="diagnose its .tflite"
        )
    return path, m


def source_run(path: Path, m: ArtifactManifest, run_dir: str | Path | None) -> TrainedModel:
    """The run (float model) the file was exported from: ``run_dir``, else the manifest's relative path, else
    its absolute one."""
    beside = Path(os.path.normpath(path.parent / m.source_run))
    candidates = [Path(run_dir)] if run_dir else [beside, Path(m.source_run_abs or m.source_run)]
    for c in candidates:
        if (c / "manifest.json").is_file():
            return TrainedModel.from_dir(c)
    raise DataError(
        f"the float model is not found: the run folder {candidates[0]} has no manifest.json",
        path=path,
        fix="pass --run RUN_DIR, the `edgetransfer train` folder the file was exported from",
    )


def _replay(path: Path, m: ArtifactManifest) -> tuple[QuantRecipe, tuple[str, ...], str, int]:
    """Recipe, ops kept in float, calibration source and seed that made the file: its ``<file>.recipe.json``
    (the doctor's) where present, else its manifest."""
    rpath = path.with_name(path.name + ".recipe.json")
    if rpath.is_file():
        r = RecipeFile.read(rpath)
        return r.recipe, tuple(r.keep_float), r.calibration, r.seed
    raw = dict(m.recipe)
    keep = tuple(raw.pop("keep_float", ()))
    raw.pop("quantized_for", None)  # what the file was made for (exporter/artifacts.py), not a recipe field
    label = str((m.calibration or {}).get("source", "auto"))
    seed = _SEED.search(label)
    source = "auto" if label.startswith("auto") else label.removeprefix("folder: ")
    return QuantRecipe(**raw), keep, source, int(seed.group(1)) if seed else 0


def diagnose(
    file: str | Path,
    *,
    data_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    top: int = TOP,
    images: int = IMAGES,
) -> QuantDiagnosis:
    """The per-tensor diagnosis of an int8 file.

    Args:
        file: an int8 ``.tflite`` / ``.onnx`` written by ``edgetransfer export`` (its manifest beside it).
        data_dir: held-out images (class folders); default the run's validation split.
        run_dir: the run it was exported from, where its manifest's path no longer holds.
        top: how many of the worst tensors get their fixes measured (0: none, and no accuracy scored).
        images: held-out images the per-tensor error is summed over.

    Raises:
        DataError / ConfigError / UnsupportedError: no manifest, not int8, run or data not found (exit 2).
    """
    start = time.perf_counter()
    path, m = open_file(file)
    if top < 0 or images < 1:
        raise ConfigError(f"--top {top} / --images {images}", fix="--top 0 or more, --images 1 or more")
    run = source_run(path, m, run_dir)
    ev = Evaluator(run, data_dir)
    held = ev.held
    if len(held.y) == 0:
        raise DataError("no held-out images", path=held.source, fix="pass --data DIR with the model's class folders")
    spec = formats.get(m.format)
    model = run.load_model()
    layout, notes = m.io.layout.lower(), []
    with tempfile.TemporaryDirectory(prefix="et-diagnose-") as tmp:
        try:
            src = spec.exporter_module().make_source(model, run.input_size, layout, Path(tmp), m.io.batch is None)
            tensors = _per_tensor(spec, src, path, m, held.x[:images], model)
        except EdgeTransferError:
            raise
        except Exception as exc:  # a converter or runtime failure: the toolchain's (exit 3), not a bug of ours
            raise ExportError(
                f"tracing the float model or running both graphs failed: {type(exc).__name__}: {str(exc)[:300]}",
                path=path,
                fix="run with --debug for the traceback",
            ) from exc
        ref_acc = file_acc = baseline = None
        replay = ""
        if top:
            ref_acc = ev.require_reference()
            file_acc = ev.check_file(path).accuracy
            recipe, keep, cal_source, seed = _replay(path, m)
            count = int((m.calibration or {}).get("count", recipe.calibration_size))
            cal = calibration_set(run.manifest, cal_source, count, seed=seed)
            fixer = _Fixer(spec, src, recipe, cal, m.metadata, keep, ev, Path(tmp))
            replay = fixer.replay(m.sha256)
            baseline = fixer.baseline(m.sha256, file_acc)
            tensors = [fixer.fix(t) if i < top else t for i, t in enumerate(tensors)]
            if replay != "exact":
                notes.append(f"the file written again from its recipe is not byte-identical ({replay}): each fix's "
                             "accuracy is against that file, not FILE")  # fmt: skip
    return QuantDiagnosis(
        file=str(path),
        format=m.format,
        source_run=str(run.run_dir),
        held_out=held.to_json(),
        images=min(images, len(held.y)),
        tensors=tuple(tensors),
        top=top,
        float_accuracy=ref_acc,
        file_accuracy=file_acc,
        replay=replay,
        fix_baseline_accuracy=baseline,
        keep_float=tuple(m.recipe.get("keep_float", ())),
        seconds=round(time.perf_counter() - start, 1),
        notes=tuple(notes),
    )


def _per_tensor(spec, src, path: Path, m: ArtifactManifest, x, model) -> list[TensorDiagnosis]:
    """The format's per-tensor rows, worst first by the error each op adds, named by Keras layer."""
    measure = spec.tensor_diagnosis_fn()
    if measure is None:  # open_file refused it already; kept for the type checker
        raise UnsupportedError(f"{spec.name} files have no per-tensor diagnosis", path=path)
    rows = measure(src, path, x, layout=m.io.layout.lower(), meta=m.metadata)
    for i, r in enumerate(rows):
        r["position"] = i
    rows.sort(key=lambda r: r["added"], reverse=True)
    layers = keras_layers(model)
    containers = frozenset(n for n in layers if n in {model.name} | _nested(model))
    return [_tensor(r, layers, containers) for r in rows]


def _nested(model) -> set[str]:
    return {layer.name for layer in model.layers if hasattr(layer, "layers")} | {
        n for layer in model.layers if hasattr(layer, "layers") for n in _nested(layer)
    }


def _tensor(r: dict, layers: dict[str, int], containers: frozenset[str]) -> TensorDiagnosis:
    return TensorDiagnosis(
        tensor=r["tensor"],
        op_type=r["op_type"],
        layer=layer_of(";".join(r.get(k, "") for k in ("tensor", "node", "weights")), layers, containers),
        snr_db=r["snr_db"],
        cosine=r["cosine"],
        added_db=r["added_db"],
        node=r["node"],
        position=r["position"],
        fix_float=r["fix_float"],
        fix_a16=r["fix_a16"],
    )


class _Fixer:
    """Writes the file again from its recipe with one more entry in ``keep_float``, and scores it."""

    def __init__(self, spec, src, recipe, cal, meta, keep: Sequence[str], ev: Evaluator, tmp: Path):
        self.spec, self.src, self.recipe, self.cal, self.meta = spec, src, recipe, cal, meta
        self.keep, self.ev, self.tmp = tuple(keep), ev, tmp
        self.n = 0
        self.baseline_sha = ""  # set by baseline(), before any fix

    def _write(self, keep: Sequence[str]) -> Path:
        self.n += 1
        out = self.tmp / f"fix{self.n}{self.spec.suffix}"
        self.spec.exporter_module().write(self.src, self.recipe, self.cal, self.meta, out, keep_float=tuple(keep))
        return out

    def replay(self, sha256: str) -> str:
        """``exact`` when the recipe writes the file byte for byte, else the accuracy of what it writes."""
        out = self._write(self.keep)
        if sha256_file(out) == sha256:
            return "exact"
        return f"accuracy {self.ev.check_file(out).accuracy:.4f}"

    def baseline(self, sha256: str, file_accuracy: float) -> float:
        """The accuracy of the file written the way each fix is, with nothing more kept: an entry that names
        no op (``""``) takes the same per-op path (TFLite: the MLIR quantizer with ``denylisted_nodes``,
        not the converter's default one), so a fix is compared with its own path, not only with FILE."""
        out = self._write((*self.keep, ""))
        self.baseline_sha = sha256_file(out)
        return file_accuracy if self.baseline_sha == sha256 else self.ev.check_file(out).accuracy

    def fix(self, t: TensorDiagnosis) -> TensorDiagnosis:
        got: dict = {}
        errors = []
        for field, entry in (("float_fixed_accuracy", t.fix_float), ("a16_fixed_accuracy", t.fix_a16)):
            if not entry or entry in self.keep:
                continue
            try:
                out = self._write((*self.keep, entry))
                if sha256_file(out) == self.baseline_sha:  # the writer matched no op to the entry
                    errors.append(f"{field.split('_')[0]}: {entry!r} changed nothing in the file")
                    continue
                got[field] = self.ev.check_file(out).accuracy
            except EdgeTransferError:
                raise
            except Exception as exc:  # a converter that refuses this one fix: recorded, the others go on
                errors.append(f"{field.split('_')[0]}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return replace(t, **got, fix_error="; ".join(errors))


def table(d: QuantDiagnosis, limit: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows, worst first (``limit`` rows): what the CLI prints and the HTML page shows."""
    acc = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    rows = [
        [
            str(i + 1),
            t.layer or "-",
            t.op_type,
            _short(t.tensor),
            f"{t.added_db:.1f}",
            f"{t.snr_db:.1f}",
            f"{t.cosine:.4f}",
            acc(t.float_fixed_accuracy),
            acc(t.a16_fixed_accuracy),
        ]
        for i, t in enumerate(d.tensors[:limit])
    ]
    header = ["#", "Keras layer", "op", "tensor", "adds dB", "SNR dB", "cosine", "op float acc", "16-bit acc"]
    return header, rows


def _short(name: str, width: int = 48) -> str:
    name = name.split(";")[0]
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def summary(d: QuantDiagnosis) -> list[str]:
    """The lines above the table: file, data, accuracies, how to read it."""
    drop = d.accuracy_drop
    acc = (
        f"float {d.float_accuracy:.4f}, this file {d.file_accuracy:.4f} ({drop:+.2f} points)"
        if d.float_accuracy is not None and d.file_accuracy is not None and drop is not None
        else "accuracy not scored (--top 0)"
    )
    return [
        f"{d.file} ({d.format} int8) against its float model {d.source_run}",
        f"held-out: {d.held_out.get('images')} images of {d.held_out.get('source')} ({d.held_out.get('split')}); "
        f"per-tensor error over {d.images} of them; {acc}",
        "worst first by the error each op adds (adds dB: the SNR of what it adds; SNR dB / cosine: the error "
        "accumulated up to the tensor); op float / 16-bit acc: the file written again with that one op in float "
        "/ that tensor at 16 bits, scored on the held-out images",
        *(
            [
                "baseline of the fixes (the file written the same per-op way with nothing more in float): "
                f"{d.fix_baseline_accuracy:.4f}"
            ]
            if d.fix_baseline_accuracy is not None
            else []
        ),
        *d.notes,
    ]


def unmet_note(results: Sequence, top: int = 3) -> str:
    """For ``export --max-accuracy-drop`` when no recipe met the bound (the doctor's ``raise_unmet``): the
    worst tensors of each written file, one line each; never raises (a diagnosis that fails is logged)."""
    lines = []
    for r in results:
        try:
            d = diagnose(r.artifact.path, top=0, images=16)
        except Exception as exc:  # the note is a courtesy: the budget error is the answer
            log.warning("the per-tensor diagnosis of %s failed: %s", r.artifact.path.name, exc)
            continue
        worst = ", ".join(
            f"{t.layer or _short(t.tensor, 40)} ({t.op_type}, adds noise at {t.added_db:.1f} dB SNR)"
            for t in d.tensors[:top]
        )
        how = f"`edgetransfer quant diagnose {r.artifact.path}` measures the accuracy of fixing each"
        lines.append(f"{r.artifact.path.name}: the ops adding most error: {worst} ({how})")
    return "; ".join(lines)
