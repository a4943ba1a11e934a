"""Export a trained run to every requested format x precision.

Every (format, precision) pair is checked before any work starts; the model is traced
once per format (the format's ``make_source``) and written per precision (its ``write``);
each file is written under a temporary name and renamed when complete, gets a
``<file>.manifest.json`` (:class:`~edgetransfer.records.ArtifactManifest`), and the folder a
``manifest.json`` listing them all. Paths in manifests are relative to the manifest's own
folder, so a run folder can be moved or copied between CI jobs.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .. import _lazy, isa, progress
from .. import memo as memo_lib
from .._version import __version__
from ..errors import ConfigError, EdgeTransferError, ExportError, UnsupportedError
from ..io import atomic_path, locked, require_own_output, require_writable, sha256_file, write_json
from ..memo import Memo
from ..records import ArtifactManifest, CalibrationInfo, CalibrationUsed, ExportIndex, FloatReference, IOSpec
from ..records.export import ExportedArtifact
from ..records.run import TrainedModel
from . import formats
from .quantization import Calibration, QuantRecipe, calibration_set
from .quantization.recipe import RecipeFile
from .quantization.recipe import check as check_recipe

log = logging.getLogger("edgetransfer")


def _name(fmt: str, recipe: QuantRecipe, layout: str) -> str:
    tag = recipe.precision
    if recipe.precision == "int8" and len(formats.get(fmt).io_dtypes) > 1:
        tag += f"_io{recipe.io_dtype}"
    if layout == "nchw":
        tag += "_nchw"
    return f"model_{tag}{formats.get(fmt).suffix}"


def _metadata(
    run: TrainedModel, fmt: str, recipe: QuantRecipe, layout: str, out: Path, dynamic_batch: bool = False
) -> dict:
    m = run.manifest
    in_dtype = recipe.io_dtype if recipe.precision == "int8" else "float32"
    return {
        "edgetransfer": __version__,
        "format": fmt,
        "precision": recipe.precision,
        "labels": list(m.classes),
        "backbone": m.backbone,
        "source_run": os.path.relpath(run.run_dir.resolve(), out.resolve()),
        "input": {
            "size": run.input_size,
            "layout": layout.upper(),
            "dtype": in_dtype,
            "color": "RGB",
            "range": [0, 255],
            "resize_policy": m.resize_policy,
            "batch": None if dynamic_batch else 1,
        },
        # The backbone's normalisation is the first layer of the graph: feed raw RGB pixels.
        "normalization": {"inside_model": True, "mean": [0.0] * 3, "std": [1.0] * 3, "model_applies": m.preprocess},
    }


def plan(
    fmts: Sequence[str], recipes: Sequence[QuantRecipe], *, explicit_io: bool = False
) -> list[tuple[str, QuantRecipe]]:
    """The (format, recipe) pairs to export; refuses an impossible one before any work.

    ``QuantRecipe.int8()`` defaults to uint8 input, which only TFLite has; for a format
    without it that default becomes float input, unless the user asked for it (``explicit_io``).
    """
    everything = "all" in fmts
    names = list(formats.all_formats()) if everything else list(dict.fromkeys(fmts))
    pairs = []
    for fmt in names:
        spec = formats.get(fmt)
        if spec.packages:  # e.g. tflm: the packaged format's file at the same recipe, refused up front if impossible
            for r in recipes:
                check_recipe(r, fmt)
            names += [spec.packages] if spec.packages not in names else []
            continue
        for r in recipes:
            if everything and r.precision not in spec.precisions:
                continue  # --format all: each precision where it exists (int16x8 is TFLite only)
            if r.io_dtype not in spec.io_dtypes and (everything or not explicit_io):
                r = replace(r, io_dtype="float32")  # everything else (options too) kept
            check_recipe(r, fmt)
            if (fmt, r) not in pairs:
                pairs.append((fmt, r))
    if not pairs:
        raise UnsupportedError("nothing to export", fix="give at least one --format and --precision")
    return pairs


def export(
    run: TrainedModel | str | Path,
    formats: Sequence[str] = ("tflite",),
    recipes: Sequence[QuantRecipe] = (QuantRecipe.fp32(),),
    *,
    out: str | Path | None = None,
    calibration: str | Path = "auto",
    layout: str = "nhwc",
    seed: int = 0,
    explicit_io: bool = False,
    dynamic_batch: bool = False,
    max_accuracy_drop: float | None = None,
    data_dir: str | Path | None = None,
    recipe_file: str | Path | None = None,
    memo: Memo | None = None,
    targets: Sequence = (),
) -> list[ExportedArtifact]:
    """Export ``run`` to every format x recipe.

    Args:
        run: a :class:`TrainedModel` or run directory.
        formats: format names (see ``edgetransfer.exporter.formats``) or ``all``.
        recipes: quantization recipes, e.g. ``[QuantRecipe.fp16(), QuantRecipe.int8()]``.
        out: output folder (default ``<run>/export``).
        calibration: ``auto`` or a folder of images, for int8 / int16x8.
        layout: ``nhwc`` or ``nchw`` (ONNX input layout).
        seed: calibration sampling seed.
        explicit_io: the recipes' io types were asked for (an impossible one is then refused).
        dynamic_batch: keep a dynamic batch dimension (default batch 1: static graphs that
            NNAPI, Core ML, GPU delegates and MediaPipe plan once).
        max_accuracy_drop: int8 files: the most accuracy (points) they may lose against the float
            model on the held-out data; remedies are searched until one fits (the quantization
            doctor, :mod:`edgetransfer.exporter.quantization.doctor`).
        data_dir: held-out data for ``max_accuracy_drop`` (default: the run's validation split).
        recipe_file: a ``<file>.recipe.json`` the doctor wrote: export exactly that file again
            (its format, recipe, calibration and ops kept in float replace ``formats``/``recipes``).
        targets: target profiles the files are for: the doctor offers no remedy their runtimes cannot run
            (16-bit activations where a target lists no ``int16x8``).
        memo: reuse files converted before from the same model, recipe, calibration and metadata
            (:mod:`edgetransfer.memo`; the sweep passes one, ``edgetransfer export`` converts every time).

    Raises:
        UnsupportedError: a pair the format cannot do (before anything is written).
        ExportError: a converter failed; names the artifact; no partial file is left.
        AccuracyBudgetError: (exit 1) no int8 recipe met ``max_accuracy_drop``; every file is
            written, the int8 one at its best attempt.
    """
    from .quantization import doctor
    from .quantization.attempts import DoctorResult

    run = run if isinstance(run, TrainedModel) else TrainedModel.from_dir(run)
    keep: dict[tuple[str, QuantRecipe], tuple[str, ...]] = {}
    if recipe_file is not None:
        replay = RecipeFile.replay(recipe_file, conflicts=max_accuracy_drop is not None)
        formats, recipes, explicit_io = (replay.format,), (replay.recipe,), True
        calibration = replay.calibration if str(calibration) == "auto" else calibration
        seed, keep = replay.seed, {(replay.format, replay.recipe): replay.keep_float}
    packagings = _packagings(formats)
    pairs = _for_isa(plan(formats, recipes, explicit_io=explicit_io), targets)
    evaluator = doctor.prepare(run, pairs, max_accuracy_drop, data_dir)  # refuses bad input before any work
    if layout not in ("nhwc", "nchw"):
        raise UnsupportedError(f"--layout {layout!r}", fix="use nhwc or nchw")
    out = Path(out) if out else run.run_dir / "export"
    require_writable(out / "manifest.json", "export folder")
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    # two exports into one --out would mix their files: the second is refused (issue 37)
    with locked(out, "export", remove=True):
        calib = None
        if any(r.needs_calibration for _, r in pairs):
            n = max(r.calibration_size for _, r in pairs if r.needs_calibration)
            calib = calibration_set(run.manifest, calibration, n, seed=seed)
        model = run.load_model()
        _check_classes(run, model)
        from .quantization.weights import ModelVariants

        # QAT and weight remedies change the weights before tracing: once per recipe, shared by every format
        variants = ModelVariants(run, model, calib, seed) if calib is not None else None
        # the doctor's search is not memoised: its file depends on its measured attempts
        model_key = memo_lib.model_digest(model) if memo is not None and evaluator is None else ""
        if any(r.changes_weights for _, r in pairs):
            model_key = ""  # a QAT fine-tune is not memoised either
        results: list[DoctorResult] = []
        with tempfile.TemporaryDirectory(prefix="et-export-") as tmp:
            sources: dict[str, object] = {}
            arts = []
            for fmt, r in progress.iterate(pairs, "files exported"):
                fmt_layout = _layout(fmt, layout)
                kept = keep.get((fmt, r), ())
                key = (
                    _memo_key(run, fmt, r, calib, out, fmt_layout, dynamic_batch, kept, model_key) if model_key else ""
                )
                cached = memo.get_bytes("exports", key) if memo is not None and key else None
                if cached is not None:
                    arts.append(
                        write_artifact(
                            None, run, fmt, r, calib, out, fmt_layout, dynamic_batch=dynamic_batch, keep_float=kept,
                            prebuilt=cached,
                        )
                    )  # fmt: skip
                    continue
                skey = _source_key(fmt, fmt_layout, dynamic_batch, model_key) if model_key else ""
                m = variants.model_for(r) if variants is not None else model
                src = _source(sources, fmt, m, run, fmt_layout, Path(tmp), dynamic_batch, memo, skey,
                              variant=ModelVariants.key(r))  # fmt: skip
                notes = variants.record(r) if variants is not None else {}
                if evaluator is not None and r.precision == "int8":
                    assert variants is not None  # int8 has calibration images

                    def source_for(recipe, fmt=fmt, fmt_layout=fmt_layout):
                        m = variants.model_for(recipe)
                        key = ModelVariants.key(recipe)
                        return _source(sources, fmt, m, run, fmt_layout, Path(tmp), dynamic_batch, variant=key), (
                            variants.record(recipe)
                        )

                    results.append(
                        doctor.search(
                            src,
                            run,
                            fmt,
                            r,
                            calib,
                            out,
                            fmt_layout,
                            evaluator,
                            max_accuracy_drop,
                            calibration,
                            seed,
                            write=write_artifact,
                            activation16=doctor.refuses_activation16(targets),
                            integer_only=doctor.integer_only_targets(targets),
                            sources=source_for,
                        )
                    )
                    art = results[-1].artifact
                    assert isinstance(art, ExportedArtifact)  # written by write_artifact, passed in above
                    arts.append(art)
                    continue
                arts.append(
                    write_artifact(
                        src,
                        run,
                        fmt,
                        r,
                        calib,
                        out,
                        fmt_layout,
                        dynamic_batch=dynamic_batch,
                        keep_float=kept,
                        notes=notes,
                    )
                )
                if key and memo is not None:
                    memo.put_bytes("exports", key, arts[-1].path.read_bytes())
        for spec in packagings:
            for a in arts:
                if a.format == spec.packages and a.precision in spec.precisions:
                    spec.exporter_module().package(a.path, out / spec.name / a.path.stem)
        if variants is not None:
            variants.restore()  # the float reference is the run's own model
        _write_index(out, run, calib, _float_reference(out, run, model, evaluator, memo, model_key))
        doctor.raise_unmet(results, arts)
        return arts


def _float_reference(out: Path, run: TrainedModel, model, evaluator, memo: Memo | None, model_key: str):
    """Store the float model's held-out predictions with the files (:mod:`edgetransfer.evaluation.reference`), so
    ``check``/``validate`` score accuracy drops without TensorFlow; None when there is no held-out data."""
    from ..evaluation import reference
    from ..evaluation.heldout import held_out

    if evaluator is not None:  # the doctor's search: its held-out data and float predictions, computed once
        ho, probs = evaluator.held, evaluator.reference_probs()
    else:
        try:
            ho = held_out(run)
        except EdgeTransferError as exc:  # the run's data is gone: the files are still good, without a reference
            log.info("note: no float reference stored with the export (%s)", exc.problem)
            return None
        key = memo_lib.digest("reference", model_key, ho.digest) if memo is not None and model_key else ""
        probs = memo.get_array("predictions", key) if memo is not None and key else None
        if probs is None:
            probs = model.predict(ho.x, verbose=0)
            if memo is not None and key:
                memo.put_array("predictions", key, probs)
    if probs is None or len(ho.y) == 0 or not np.isfinite(probs).all():  # a broken float model: no reference
        log.info("note: no float reference stored with the export (no held-out image, or non-finite predictions)")
        return None
    return reference.write(out, ho, probs, run.model_path)


def _for_isa(pairs: list[tuple[str, QuantRecipe]], targets: Sequence) -> list[tuple[str, QuantRecipe]]:
    """int8 recipes of formats with saturation-free weights get them when a target's CPU is x86 without VNNI
    (:mod:`edgetransfer.isa`)."""
    out = []
    for fmt, r in pairs:
        options = isa.for_targets(formats.get(fmt).quantizer_options, r.precision, r.options, targets)
        if options != tuple(r.options):
            log.info(
                "note: %s int8 with option %s: %s run x86 without VNNI (U8S8 pairs would saturate in int16)",
                fmt,
                options[-1],
                ", ".join(isa.saturating_targets(targets)),
            )
            r = replace(r, options=options)
        out.append((fmt, r))
    return out


def _memo_key(
    run, fmt: str, r: QuantRecipe, calib, out: Path, layout: str, dynamic: bool, kept, model_key: str
) -> str:
    """Everything the written file's bytes depend on (the metadata embeds the relative run path)."""
    meta = _metadata(run, fmt, r, layout, out, dynamic)
    calib_key = memo_lib.digest(calib.images) if calib is not None and r.needs_calibration else ""
    code = memo_lib.source_digest(formats, sys.modules[__name__])  # every format module, and this one
    return memo_lib.digest(
        "export", fmt, asdict(r), layout, dynamic, list(kept), model_key, calib_key, meta, _versions(fmt), code
    )


def _source_key(fmt: str, layout: str, dynamic: bool, model_key: str) -> str:
    """The traced float graph depends on the weights, the layout and the batch only: every
    precision of those weights, in any sweep or folder, starts from the same one."""
    code = memo_lib.source_digest(formats, sys.modules[__name__])
    return memo_lib.digest("source", fmt, layout, dynamic, model_key, _versions(fmt), code)


def _layout(fmt: str, layout: str) -> str:
    """The input layout ``fmt`` is written in (the one asked for where the format has it)."""
    return formats.get(fmt).layout_for(layout)


def _packagings(fmts: Sequence[str]) -> list[formats.FormatSpec]:
    return [formats.get(f) for f in dict.fromkeys(fmts) if f != "all" and formats.get(f).packages]


def _source(
    cache: dict, fmt: str, model, run: TrainedModel, layout: str, tmp: Path, dynamic_batch: bool = False,
    memo: Memo | None = None, key: str = "", *, variant: str = "",
):  # fmt: skip
    """Trace or convert the float model once per format, shared by every precision; with a memo and
    a format that packs its source (``source_blob``/``source_from_blob``), once per weights. ``variant``:
    the model's weights as a recipe changed them (``ModelVariants.key``), traced once per format too."""
    mod = formats.get(fmt).exporter_module()
    packs = memo is not None and key and hasattr(mod, "source_from_blob")
    ck = f"{fmt}|{variant}" if variant else fmt
    if variant:
        tmp = tmp / variant
        tmp.mkdir(exist_ok=True)
    if ck not in cache and packs:
        blob = memo.get_bytes("sources", key)  # type: ignore[union-attr]
        if blob is not None:
            cache[ck] = mod.source_from_blob(blob, tmp)
    if ck not in cache:
        try:
            cache[ck] = mod.make_source(model, run.input_size, layout, tmp, dynamic_batch)
            if packs:
                memo.put_bytes("sources", key, mod.source_blob(cache[ck]))  # type: ignore[union-attr]
        except EdgeTransferError:
            raise
        except Exception as exc:
            raise ExportError(
                f"converting the model to {fmt} failed: {type(exc).__name__}: {str(exc)[:300]}",
                path=run.model_path,
                fix="run with --debug for the converter's traceback",
            ) from exc
    return cache[ck]


def write_artifact(
    source,
    run: TrainedModel,
    fmt: str,
    recipe: QuantRecipe,
    calib: Calibration | None,
    out: Path,
    layout: str,
    *,
    name: str | None = None,
    attempts: tuple[dict, ...] = (),
    dynamic_batch: bool = False,
    keep_float: Sequence[str] = (),
    prebuilt: bytes | None = None,
    notes: dict | None = None,
) -> ExportedArtifact:
    """Write one file of ``fmt`` at ``recipe`` from a traced ``source``, with its manifest.

    ``keep_float`` (int8): ops left in float (TFLite output tensor names, ONNX node names),
    recorded in the manifest's ``recipe``; ``attempts``: the doctor's search, recorded as is;
    ``prebuilt``: the file's bytes from the memo (``source`` unused; the manifest says ``memo``).
    """
    extra = {"keep_float": tuple(keep_float)} if keep_float else {}
    made_for = isa.quantized_for(formats.get(fmt).quantizer_options, recipe.precision, recipe.options)
    path = out / (name or _name(fmt, recipe, layout))
    meta = _metadata(run, fmt, recipe, layout, out, dynamic_batch)
    start = time.perf_counter()
    try:
        with atomic_path(path) as tmp:
            if prebuilt is not None:
                tmp.write_bytes(prebuilt)
            else:
                formats.get(fmt).exporter_module().write(source, recipe, calib, meta, tmp, **extra)
    except EdgeTransferError:
        raise
    except Exception as exc:  # converters raise anything from ValueError to ConverterError
        raise ExportError(
            f"exporting {path.name} ({fmt} {recipe.precision}) failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
            path=path,
            fix="run with --debug for the converter's traceback; try another precision",
        ) from exc
    io = IOSpec.from_json(meta["input"], f"{path.name} metadata")
    m = ArtifactManifest(
        path=path.name,
        format=fmt,
        precision=recipe.precision,
        io=io,
        metadata=meta,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        source_run=meta["source_run"],
        source_run_abs=str(run.run_dir.resolve()),
        source_fingerprint=run.manifest.data.fingerprint,
        recipe={
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()},
            **{k: list(v) for k, v in extra.items()},
            **({"quantized_for": made_for} if made_for else {}),
            **(notes or {}),
        },  # fmt: skip
        calibration=CalibrationUsed(calib.source, len(calib.images)) if calib and recipe.needs_calibration else None,
        converter={**_versions(fmt), **({"from": "memo"} if prebuilt is not None else {})},
        export_seconds=round(time.perf_counter() - start, 2),
        attempts=attempts,
    )
    write_json(path.with_name(path.name + ".manifest.json"), m.to_json())
    return ExportedArtifact(path, fmt, recipe.precision, io, m)


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` whose ``manifest.json`` is not an export index (a run folder, issue 25)."""
    require_own_output(out / "manifest.json", "edgetransfer.export", "export index (manifest.json)")


def _check_classes(run: TrainedModel, model) -> None:
    """Refuse a run whose manifest lists another number of classes than the model has outputs."""
    outputs = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if outputs is not None and outputs != len(run.manifest.classes):
        raise ConfigError(
            f"the run's manifest.json lists {len(run.manifest.classes)} classes but its model has {outputs} outputs",
            path=run.run_dir / "manifest.json",
            fix="restore the run's own manifest.json, or train the run again",
        )


def _versions(fmt: str) -> dict:
    tf = _lazy.tf()
    v = {"edgetransfer": __version__, "tensorflow": tf.__version__}
    v.update({m: _lazy.require(m).__version__ for m in formats.get(fmt).converters})
    return v


def _write_index(out: Path, run: TrainedModel, calib: Calibration | None, ref: FloatReference | None = None) -> None:
    listed = {p.name[: -len(".manifest.json")] for p in out.glob("*.manifest.json")}
    index = ExportIndex(
        source_run=os.path.relpath(run.run_dir.resolve(), out.resolve()),
        artifacts=tuple(sorted(listed)),
        calibration=CalibrationInfo(calib.source, len(calib.images), tuple(calib.files)) if calib else None,
        reference=ref,
    )
    write_json(out / "manifest.json", index.to_json())
