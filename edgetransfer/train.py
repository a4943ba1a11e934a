"""Transfer learning in two workflows, chosen by data size, resumable, CPU or GPU.

- ``fine-tune``: frozen backbone + new head, then the top of the backbone unfrozen at a
  ~10x smaller learning rate (BatchNorm stays in inference mode); augmentation on.
- ``features``: every image through the frozen backbone once, vectors cached on disk,
  a small head trained on the cache; optionally K augmented views per image.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import _lazy, backbones
from . import data as data_lib
from ._version import __version__
from .errors import ConfigError, DataError

WORKFLOWS = ("auto", "fine-tune", "features")
# The usual guide (Keras transfer-learning guide, cs231n notes): with ~1k images the head
# alone generalises best; up to ~10k, unfreezing the last blocks pays; from ~50k, all.
FEATURES_MAX, LAST_BLOCKS_MAX, ALL_FROM = 1_000, 10_000, 50_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; validated when built."""

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    workflow: str = "auto"
    image_size: int | None = None
    epochs: int = 10
    fine_tune_epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_lr_factor: float = 0.1
    unfreeze: str = "auto"
    cut_at: str = "top"
    dropout: float = 0.2
    augment: bool = True
    feature_views: int = 1
    class_weights: bool = True
    patience: int = 3
    seed: int = 0
    val_split: float = 0.2
    policy: str = "crop"
    mixed_precision: bool = False
    strategy: str = "auto"

    def __post_init__(self) -> None:
        backbones.get(self.backbone)
        checks = [
            (self.workflow in WORKFLOWS, f"--workflow {self.workflow!r}", f"use one of {', '.join(WORKFLOWS)}"),
            (self.epochs >= 1 and self.fine_tune_epochs >= 0, "--epochs must be >= 1 and --fine-tune-epochs >= 0", "fix the counts"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}", "use a positive batch size"),
            (0 < self.learning_rate < 1 and 0 < self.fine_tune_lr_factor <= 1, "learning rate out of range", "use e.g. 1e-3 and 0.1"),
            (self.unfreeze in ("auto", "all") or self.unfreeze.isdigit(), f"--unfreeze {self.unfreeze!r}", "use auto, all or a layer count"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}", "use a value in [0, 1)"),
            (self.feature_views >= 1, f"--augment-views {self.feature_views}", "use 1 or more"),
            (0 < self.val_split < 1, f"--val-split {self.val_split}", "use a fraction such as 0.2"),
            (self.strategy in ("auto", "default", "mirrored"), f"--strategy {self.strategy!r}", "use auto, default or mirrored"),
            (not (self.workflow == "features" and self.unfreeze not in ("auto", "0")),
             "--unfreeze has no effect with --workflow features", "drop --unfreeze or use --workflow fine-tune"),
        ]
        for ok, problem, fix in checks:
            if not ok:
                raise ConfigError(problem, fix=fix)

    @classmethod
    def quick(cls, backbone: str = "efficientnet_lite0", **overrides) -> "TrainConfig":
        """Few epochs, for demos and smoke tests."""
        return cls(**{"backbone": backbone, "epochs": 5, "fine_tune_epochs": 3, **overrides})


@dataclass(frozen=True)
class Plan:
    """The workflow actually run and why."""

    workflow: str
    unfreeze: str  # "0", "all" or a layer count
    reason: str


def choose(n_train: int, cfg: TrainConfig, base_layers: int, last_blocks: int) -> Plan:
    """Pick the workflow and unfreeze depth from the number of training images.

    Args:
        n_train: training images.
        cfg: the config (explicit choices win over the rule).
        base_layers: layers in the backbone prefix.
        last_blocks: layers after its ``stride16`` cut point (the last stage and head).
    """
    n = f"{n_train:,} training images"
    if cfg.workflow == "features" or (cfg.workflow == "auto" and n_train <= FEATURES_MAX):
        why = "chosen by --workflow" if cfg.workflow == "features" else f"{n} <= {FEATURES_MAX:,}: the head alone generalises best; fine-tuning this few mostly overfits"
        return Plan("features", "0", why)
    if cfg.unfreeze != "auto":
        depth, why = cfg.unfreeze, f"--unfreeze {cfg.unfreeze}"
    elif n_train >= ALL_FROM:
        depth, why = "all", f"{n} >= {ALL_FROM:,}: enough to adapt every layer"
    elif n_train <= LAST_BLOCKS_MAX:
        depth, why = str(last_blocks), f"{n} <= {LAST_BLOCKS_MAX:,}: unfreeze the last blocks ({last_blocks} layers)"
    else:
        depth = str(min(base_layers, 2 * last_blocks))
        why = f"{LAST_BLOCKS_MAX:,} < {n} < {ALL_FROM:,}: unfreeze the last two stages ({depth} layers)"
    source = "chosen by --workflow" if cfg.workflow == "fine-tune" else "auto"
    return Plan("fine-tune", depth, f"{source}; {why}")


@dataclass(frozen=True)
class TrainedModel:
    """A finished run directory: ``model.keras``, ``manifest.json`` and two PNGs."""

    run_dir: Path
    manifest: dict = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def model_path(self) -> Path:
        return self.run_dir / self.manifest["files"]["model"]

    @property
    def val_accuracy(self) -> float:
        return float(self.manifest["metrics"]["val_accuracy"])

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> "TrainedModel":
        """Open a finished run; a missing or partial one is a clear error."""
        run_dir = Path(run_dir)
        path = run_dir / "manifest.json"
        if not path.is_file():
            hint = " (an interrupted run: finish it with `edgetransfer train ... --resume`)" if run_dir.with_name(run_dir.name + ".partial").exists() else ""
            raise ConfigError(f"not a finished run directory: no manifest.json{hint}", path=run_dir,
                              fix="pass the --out folder of a finished `edgetransfer train`")
        return cls(run_dir, json.loads(path.read_text()))

    def load_model(self):
        """The Keras model, loaded with ``safe_mode`` (no code from the file runs)."""
        keras = _lazy.keras()
        return keras.saving.load_model(self.model_path, safe_mode=True, compile=False)


def _versions() -> dict:
    tf, keras = _lazy.tf(), _lazy.keras()
    return {"edgetransfer": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _splits(data_dir, val_data, cfg: TrainConfig) -> tuple[data_lib.Dataset, tuple, tuple]:
    ds = data_lib.load(data_dir, val_split=None if val_data else cfg.val_split, seed=cfg.seed)
    if val_data is None:
        return ds, ds.split("train"), ds.split("val")
    vds = data_lib.load(val_data)
    if vds.classes != ds.classes:
        raise DataError(f"classes differ: training has {list(ds.classes)}, validation has {list(vds.classes)}",
                        path=val_data, fix="give --val-data exactly the class folders of --data")
    train_files = tuple(f for f in ds.files if f.split in ("train", "all"))
    return ds, train_files, tuple(f for f in vds.files if f.split in ("val", "all", "train"))


def _run_dirs(out: Path, resume: bool, cfg: TrainConfig) -> Path:
    partial = out.with_name(out.name + ".partial")
    if out.exists():
        raise ConfigError("run directory already exists", path=out, fix="choose another --out or delete it")
    if resume and not partial.exists():
        raise ConfigError("nothing to resume: no interrupted run here", path=out, fix="drop --resume to start a new run")
    if partial.exists() and not resume:
        raise ConfigError("an interrupted run is in the way", path=partial,
                          fix="add --resume to continue it, or delete that folder to start over")
    saved = partial / "config.json"
    if resume and saved.exists() and json.loads(saved.read_text()) != asdict(cfg):
        raise ConfigError("--resume with different settings than the interrupted run", path=saved,
                          fix="repeat the original options (they are in that file), or start a new --out")
    partial.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(asdict(cfg), indent=2))
    return partial


def train(data_dir: str | Path, config: TrainConfig | None = None, *, out: str | Path = "runs/latest",
          val_data: str | Path | None = None, resume: bool = False) -> TrainedModel:
    """Train a classifier on an image folder and write a run directory.

    Args:
        data_dir: image folder (class sub-folders, optionally train/ and val/).
        config: training settings (default :class:`TrainConfig`).
        out: run directory; written as ``<out>.partial`` and renamed when complete.
        val_data: a separate validation folder (else the folder's val/ or a seeded split).
        resume: continue an interrupted ``<out>.partial``.

    Raises:
        ConfigError, DataError: bad options or data (exit 2). ToolchainError: TF failed (3).
    """
    from . import _fit

    cfg = config or TrainConfig()
    spec = backbones.get(cfg.backbone)
    size = spec.check_size(cfg.image_size or spec.input_size)
    ds, train_files, val_files = _splits(data_dir, val_data, cfg)
    if not val_files:
        raise DataError("no validation images", path=data_dir, fix="add a val/ folder, or use --val-split / --val-data")
    out = Path(out)
    work = _run_dirs(out, resume, cfg)
    start = time.perf_counter()
    result = _fit.run(spec, cfg, size, len(ds.classes), train_files, val_files, work)
    seconds = time.perf_counter() - start
    manifest = _fit.finish(work, result, val_files=val_files, spec=spec, cfg=cfg, size=size, ds=ds, n_train=len(train_files),
                           seconds=seconds, versions=_versions(), resumed=resume)
    for leftover in work.glob("backup_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    os.replace(work, out)
    return TrainedModel(out, manifest)
