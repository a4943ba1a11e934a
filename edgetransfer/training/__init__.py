"""Transfer learning in two workflows, chosen by data size, resumable, CPU or GPU.

- ``fine-tune``: frozen backbone + new head, then the top of the backbone unfrozen at a
  ~10x smaller learning rate (BatchNorm stays in inference mode); augmentation on.
- ``features``: every image through the frozen backbone once, vectors cached on disk,
  a small head trained on the cache; optionally K augmented views per image.

``config`` holds the settings and the automatic choice, ``model`` the Keras model,
``fit`` the phases, ``rundir`` the run directory and :class:`TrainedModel`.
"""

from __future__ import annotations

import errno
import logging
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import _lazy, backbones, metrics, progress
from .. import data as data_lib
from ..backbones.weights import Weights
from ..data import tfdata
from ..errors import ConfigError, DataError
from ..io import atomic_path, require_outside, require_writable, write_json
from ..records import DataInfo, Metrics, RunManifest
from ..records.run import TrainedModel
from . import cluster as cluster_lib
from . import interrupt, rundir
from .config import RECIPE_SOURCES, WORKFLOWS, Plan, TrainConfig, choose
from .fit import FitContext, FitResult, predict_files

__all__ = ["WORKFLOWS", "Plan", "TrainConfig", "TrainedModel", "choose", "train"]
log = logging.getLogger("edgetransfer")


def _splits(data_dir, val_data, cfg: TrainConfig, follow_links: bool = False) -> tuple[data_lib.Dataset, tuple, tuple]:
    ds = data_lib.load(
        data_dir, val_split=None if val_data else cfg.val_split, seed=cfg.seed, follow_links=follow_links
    )
    if val_data is None:
        return ds, ds.split("train"), ds.split("val")
    vds = data_lib.load(val_data, follow_links=follow_links)
    if vds.classes != ds.classes:
        raise DataError(
            f"classes differ: training has {list(ds.classes)}, validation has {list(vds.classes)}",
            path=val_data,
            fix="give --val-data exactly the class folders of --data",
        )
    train_files = tuple(f for f in ds.files if f.split in ("train", "all"))
    return ds, train_files, tuple(f for f in vds.files if f.split in ("val", "all", "train"))


def _require_trained_and_validated(classes, train_files, val_files, data_dir) -> None:
    """Every class needs an image to train on and one to be scored on: a class with one image
    "trained" to val accuracy 1.0 measured on the other classes alone (issue #26)."""
    n_train, n_val = Counter(f.label for f in train_files), Counter(f.label for f in val_files)
    short = [i for i in range(len(classes)) if not n_train[i] or not n_val[i]]
    if short:
        counts = ", ".join(f"{classes[i]}: train {n_train[i]} / val {n_val[i]}" for i in short)
        raise DataError(
            f"{'a class' if len(short) == 1 else 'classes'} cannot be both trained and validated ({counts})",
            path=data_dir,
            fix=(
                f"add images to {', '.join(repr(classes[i]) for i in short)} (at least 2 each; "
                "tens to measure anything), or remove the class folder"
            ),
        )


def _show_split(classes, train_files, val_files) -> None:
    """The split, on a terminal, before minutes of training (issue #26: known at 3 s, shown at 100 s)."""
    if not progress.active():
        return
    n_train, n_val = Counter(f.label for f in train_files), Counter(f.label for f in val_files)
    progress.line(f"data         {len(train_files)} training / {len(val_files)} held-out images")
    for i, c in enumerate(classes):
        progress.line(f"             {c}: train {n_train[i]} / val {n_val[i]}")


def _warn(cfg: TrainConfig, plan: Plan) -> None:
    if Weights.parse(cfg.weights).kind == "none" and plan.workflow == "features":
        log.warning(
            "WARNING: --weights none with the features workflow trains a head on the features of a "
            "RANDOM backbone: expect chance-level accuracy. Use --weights imagenet (or a weights file), "
            "or --workflow fine-tune --unfreeze all."
        )


def train(
    data_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    out: str | Path = "runs/latest",
    val_data: str | Path | None = None,
    resume: bool = False,
    follow_links: bool = False,
) -> TrainedModel:
    """Train a classifier on an image folder and write a run directory.

    Args:
        data_dir: image folder (class sub-folders, optionally train/ and val/).
        config: training settings (default :class:`TrainConfig`).
        out: run directory; written as ``<out>.partial`` and renamed when complete.
        val_data: a separate validation folder (else the folder's val/ or a seeded split).
        resume: continue an interrupted ``<out>.partial``.
        follow_links: read split or class folders that are symbolic links leaving the data folder.

    Raises:
        ConfigError, DataError: bad options or data (exit 2). ToolchainError: TF failed (3).
    """
    cfg = config or TrainConfig()
    out = require_writable(Path(out), "run directory")  # before minutes of work, not at the end
    for folder in (data_dir, val_data):  # a run inside the data would become a class next time
        if folder is not None:
            require_outside(out, folder, "run directory (--out)", "data folder")
    spec = backbones.get(cfg.backbone)
    size = spec.check_size(cfg.image_size or spec.input_size)
    ds, train_files, val_files = _splits(data_dir, val_data, cfg, follow_links)
    if not val_files:
        raise DataError(
            "no validation images", path=data_dir, fix="add a val/ folder, or use --val-split / --val-data"
        )
    _require_trained_and_validated(ds.classes, train_files, val_files, data_dir)
    _show_split(ds.classes, train_files, val_files)
    if cfg.teacher:  # before minutes of work: a missing teacher or other classes is exit 2 now
        from .distill import load_teacher

        load_teacher(cfg.teacher, ds.classes)
    data_now = {"fingerprint": ds.fingerprint(), "classes": list(ds.classes), "root": str(Path(data_dir).resolve())}
    cluster = cluster_lib.from_env() if cfg.strategy == "auto" else None
    if cluster and resume:
        raise ConfigError(
            "--resume is not supported for multi-worker training", fix="start a new --out on every worker"
        )
    digest = cluster_lib.digest({"config": asdict(cfg), "data": data_now["fingerprint"], "n": len(train_files)})
    ctx_of = lambda work: FitContext(  # noqa: E731
        spec, cfg, size, len(ds.classes), tuple(train_files), tuple(val_files), work, cluster, digest
    )
    if cluster and not cluster.is_chief:
        return _train_worker(ctx_of, ds, out)
    with rundir.claim(out, resume) as partial, interrupt.guard():
        full = False
        try:
            rundir.check_resume(partial, resume, cfg, data_now)
            ctx = ctx_of(partial)
            start = time.perf_counter()
            with progress.stage("loading TensorFlow and Keras"):  # 5-20 s of silence otherwise (issue #26)
                from .fit import run

                _lazy.keras()

            with tfdata.input_errors([f.path for f in (*train_files, *val_files)]):
                result = run(ctx)
                interrupt.check()
                _warn(cfg, result.plan)
                manifest = _write(ctx, result, ds, time.perf_counter() - start, resume)
                interrupt.check()  # a Ctrl-C lost while writing: keep the .partial, exit 130
        except OSError as exc:  # h5py / Keras writing checkpoints on a full disk
            if exc.errno != errno.ENOSPC:
                raise
            full = True
        if full:  # outside the except block, so the failed writes' frames can be freed
            rundir.disk_full(partial)
    return TrainedModel(out, manifest)


def _train_worker(ctx_of, ds: data_lib.Dataset, out: Path) -> TrainedModel:
    """A non-chief worker: trains in step with the chief into a temporary folder, removed at
    the end, so only the chief's ``out`` is written (TF's multi-worker guide: "only the chief
    saves"; the others still run every collective)."""
    from .fit import run

    work = Path(tempfile.mkdtemp(prefix="edgetransfer-worker-"))
    try:
        ctx = ctx_of(work)
        start = time.perf_counter()
        result = run(ctx)
        manifest = _write(ctx, result, ds, time.perf_counter() - start, False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s: trained in step with the chief, which writes %s", ctx.cluster.task, out)
    return TrainedModel(out, manifest)


def _recipe(cfg: TrainConfig, plan: Plan) -> dict:
    """What the fine-tune phases actually used, with the sources of the defaults."""
    if plan.workflow != "fine-tune":
        return {"head": "Adam, sparse cross-entropy, EarlyStopping(val_loss, best weights)"}
    return {
        "head_warmup": f"{cfg.epochs} epochs, frozen backbone, lr {cfg.learning_rate:g}",
        "fine_tune": (
            f"{cfg.fine_tune_epochs} epochs, top {plan.unfreeze} layers, peak lr "
            f"{cfg.learning_rate * cfg.fine_tune_lr_factor:g}, {cfg.lr_schedule}"
            + (f" with {cfg.warmup_epochs} warm-up epoch(s)" if cfg.lr_schedule == "cosine" else "")
        ),
        "optimizer": f"AdamW(weight_decay={cfg.weight_decay:g})" if cfg.weight_decay else "Adam",
        "loss": f"categorical cross-entropy, label_smoothing={cfg.label_smoothing:g}",
        "augmentation": (
            f"random resized crop (scale {cfg.crop_scale:g}-1), flip, rotation 0.05, brightness/contrast/saturation"
            if cfg.augment
            else "none"
        ),
        "early_stopping": f"EMA({cfg.stop_smoothing:g}) of val_accuracy, patience {cfg.patience}, best weights kept",
        "batchnorm": "inference mode (training=False)",
        "sources": RECIPE_SOURCES,
    }


def _write(ctx: FitContext, r: FitResult, ds: data_lib.Dataset, seconds: float, resumed: bool) -> RunManifest:
    """Evaluate on the held-out files, write model.keras, the PNGs and manifest.json into the work folder."""
    from ..report import plots

    cfg, work = ctx.cfg, ctx.work
    probs = r.val_probs
    if probs is None:
        with progress.stage(f"scoring the {len(ctx.val_files)} held-out images"):
            probs = predict_files(r.model, ctx.val_files, ctx.size, cfg.policy, cfg.batch_size)
    s = metrics.scores(probs, np.array([f.label for f in ctx.val_files]), ctx.n_classes, "the trained model")
    with progress.stage("writing model.keras and the plots"):
        with atomic_path(work / "model.keras") as tmp:
            r.model.save(tmp)  # type: ignore[attr-defined]
        plots.training_curves(r.history, r.phase_starts, work / "curves.png")
        plots.confusion_matrix(np.array(s.confusion), ds.classes, work / "confusion.png")
    manifest = RunManifest(
        backbone=ctx.spec.name,
        weights=Weights.parse(cfg.weights).describe(),
        input_size=ctx.size,
        preprocess=ctx.spec.preprocess.to_json(),
        resize_policy=cfg.policy,
        cut_at=cfg.cut_at,
        classes=tuple(ds.classes),
        workflow=r.plan.workflow,
        unfreeze=r.plan.unfreeze,
        reason=r.plan.reason,
        metrics=Metrics(s.accuracy, round(s.loss, 6), len(ctx.val_files), s.per_class, s.confusion),
        history=r.history,
        phase_starts=tuple(r.phase_starts),
        data=DataInfo(
            str(Path(ds.root).resolve()),
            ds.fingerprint(),
            ds.split_source,
            len(ctx.train_files),
            len(ctx.val_files),
            ds.report.counts,
            tuple(str(i.path) for i in ds.report.bad_files),
        ),
        seed=cfg.seed,
        config={
            **asdict(cfg),
            "recipe": _recipe(cfg, r.plan),
            "runtime": r.runtime,
            **({"distill": r.distill} if r.distill else {}),
        },
        train_seconds=round(seconds, 2),
        images_per_second=round(r.images_trained / seconds, 2) if seconds else None,
        strategy=r.strategy,
        feature_cache=asdict(r.cache) if r.cache else None,
        resumed=resumed,
        versions=rundir.versions(),
        files={"model": "model.keras", "curves": "curves.png", "confusion": "confusion.png"},
    )
    write_json(work / "manifest.json", manifest.to_json())
    return manifest
