"""Records of training and export: the run manifest and the exported file's manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import ConfigError, DataError, UnsafeFileError
from .base import Record


@dataclass(frozen=True)
class Metrics(Record):
    """Held-out scores of a model."""

    val_accuracy: float | None
    val_loss: float | None = None
    val_images: int = 0
    per_class_accuracy: tuple[float | None, ...] = ()
    confusion: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class DataInfo(Record):
    """Where a run's data came from and how it was split."""

    root: str
    fingerprint: str
    split_source: str = "given"
    train_images: int = 0
    val_images: int = 0
    counts: dict = field(default_factory=dict)
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunManifest(Record):
    """``manifest.json`` of a finished training run."""

    KIND: ClassVar[str] = "edgetransfer.run"
    BOUNDS: ClassVar[dict[str, str]] = {"classes": "label"}  # checked when read (records.base)
    SCHEMA: ClassVar[int] = 2

    backbone: str
    weights: str
    input_size: int
    preprocess: dict
    classes: tuple[str, ...]
    data: DataInfo
    config: dict
    metrics: Metrics
    resize_policy: str = "crop"
    cut_at: str = "top"
    workflow: str = "features"
    unfreeze: str = "0"
    reason: str = ""
    history: dict = field(default_factory=dict)
    phase_starts: tuple[int, ...] = ()
    seed: int = 0
    train_seconds: float = 0.0
    images_per_second: float | None = None
    strategy: str = ""
    feature_cache: dict | None = None
    resumed: bool = False
    versions: dict = field(default_factory=dict)
    files: dict = field(default_factory=lambda: {"model": "model.keras"})


@dataclass(frozen=True)
class IOSpec(Record):
    """What an exported file takes: RGB [0, 255] pixels at ``size``, in ``layout``/``dtype``."""

    size: int
    layout: str = "NHWC"
    dtype: str = "float32"
    color: str = "RGB"
    range: tuple[float, float] = (0, 255)
    resize_policy: str = "crop"
    batch: int | None = 1


@dataclass(frozen=True)
class ArtifactManifest(Record):
    """``<file>.manifest.json``: what an exported file is and where it came from.

    ``source_run`` is stored relative to the manifest's folder (and absolute as a fallback),
    so a run folder moved as a whole still validates from anywhere.
    """

    KIND: ClassVar[str] = "edgetransfer.artifact"
    SCHEMA: ClassVar[int] = 2

    path: str
    format: str
    precision: str
    io: IOSpec
    metadata: dict
    sha256: str
    size_bytes: int
    source_run: str
    source_run_abs: str = ""
    source_fingerprint: str = ""
    recipe: dict = field(default_factory=dict)
    calibration: dict | None = None
    converter: dict = field(default_factory=dict)
    export_seconds: float = 0.0
    attempts: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ResumeState(Record):
    """``config.json`` of a run in progress: the settings and data a ``--resume`` must match."""

    KIND: ClassVar[str] = "edgetransfer.train-state"
    SCHEMA: ClassVar[int] = 2

    config: dict
    data: dict


@dataclass(frozen=True)
class TrainedModel:
    """A finished run directory: ``model.keras``, ``manifest.json`` and two PNGs."""

    run_dir: Path
    manifest: RunManifest = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def input_size(self) -> int:
        return int(self.manifest.input_size)

    @property
    def has_float_model(self) -> bool:
        """Whether the run has a Keras float model (a run imported from a .tflite/.onnx has none)."""
        return "model" in self.manifest.files

    @property
    def model_path(self) -> Path:
        if not self.has_float_model:
            raise DataError(
                "this run has no float Keras model (it was imported from an exported file)",
                path=self.run_dir / "manifest.json",
                fix="measure the file's own accuracy, or import the original Keras model for a float reference",
            )
        path = (self.run_dir / self.manifest.files["model"]).resolve()
        if self.run_dir.resolve() not in path.parents:
            raise UnsafeFileError(
                f"manifest.json points the model outside the run folder ({path})",
                path=self.run_dir / "manifest.json",
                fix="restore the run's own manifest.json",
            )
        return path

    @property
    def val_accuracy(self) -> float | None:
        return self.manifest.metrics.val_accuracy

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> TrainedModel:
        """Open a finished run; a missing, partial or broken one is a clear error."""
        run_dir = Path(run_dir)
        path = run_dir / "manifest.json"
        if not path.is_file():
            partial = run_dir.with_name(run_dir.name + ".partial")
            hint = (
                " (an interrupted run: finish it with `edgetransfer train ... --resume`)" if partial.exists() else ""
            )
            raise ConfigError(
                f"not a finished run directory: no manifest.json{hint}",
                path=run_dir,
                fix="pass the --out folder of a finished `edgetransfer train`",
            )
        return cls(run_dir, RunManifest.read(path))

    def load_model(self):  # -> keras.Model
        """The Keras model, loaded with ``safe_mode`` (no code from the file runs)."""
        from ..safe_keras import load_model

        return load_model(self.model_path)
