"""Records of the export stage: the export folder's index, the quantization doctor's attempts,
and the TFLite Micro bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from ..io import sha256_file
from .base import Record
from .run import ArtifactManifest, IOSpec, TrainedModel


@dataclass(frozen=True)
class CalibrationInfo(Record):
    """Which images calibrated the int8 files of an export."""

    source: str
    count: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class FloatReference(Record):
    """The float model's predictions on the held-out data, stored with the export (``reference.npz``), so a
    check or validation with an accuracy budget scores the files against it without TensorFlow.

    Attributes:
        file: the ``.npz`` beside the index (``probs``: ``[images, classes]`` float32, ``labels``: int64).
        data_digest: :attr:`edgetransfer.evaluation.heldout.HeldOut.digest` of the images it was made on: the key.
        accuracy: the float model's top-1 on them.
        model_sha256: sha256 of the Keras file the predictions came from.
        made_by: what produced them (``keras``).
    """

    KIND: ClassVar[str] = "edgetransfer.float_reference"
    SCHEMA: ClassVar[int] = 1

    file: str
    data_digest: str
    images: int
    classes: int
    accuracy: float
    source: str = ""
    split: str = ""
    model_sha256: str = ""
    made_by: str = "keras"


@dataclass(frozen=True)
class ExportIndex(Record):
    """``<export>/manifest.json``: the run the files came from (relative to this folder) and the files."""

    KIND: ClassVar[str] = "edgetransfer.export"
    SCHEMA: ClassVar[int] = 2

    source_run: str
    artifacts: tuple[str, ...]
    calibration: CalibrationInfo | None = None
    reference: FloatReference | None = None  # None: made before references were stored, or no held-out data


@dataclass(frozen=True)
class Attempt(Record):
    """One recipe the accuracy-bounded int8 search wrote and measured (or that failed)."""

    attempt: int
    remedy: str
    recipe: dict
    calibration_count: int
    keep_float: tuple[str, ...] = ()
    status: str = "ok"  # ok | failed
    accuracy: float | None = None
    accuracy_drop: float | None = None
    size_bytes: int | None = None
    p50_ms: float | None = None
    met_budget: bool = False
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class TFLMBundle(Record):
    """``tflm_manifest.json``: the C source bundle of a full-int8 model for a microcontroller."""

    KIND: ClassVar[str] = "edgetransfer.tflm"
    SCHEMA: ClassVar[int] = 1

    tflite: str
    cc: str
    header: str
    arena_bytes: int
    flash_bytes: int
    ops: tuple[str, ...] = ()
    edgetransfer: str = ""
    source: str = ""
    sha256: str = ""
    array: str = "g_model"
    resolver: tuple[str, ...] = ()
    arena_method: str = ""


@dataclass(frozen=True)
class ExportedArtifact:
    """One exported file and what it is (its manifest, typed)."""

    path: Path
    format: str
    precision: str
    io: IOSpec
    manifest: ArtifactManifest = field(repr=False)

    @property
    def metadata(self) -> dict:
        return self.manifest.metadata

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    @property
    def size_bytes(self) -> int:
        return self.manifest.size_bytes

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "precision": self.precision,
            "io": asdict(self.io),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
        }

    @property
    def source_run(self) -> Path:
        """The run folder this file came from: relative to the manifest first, then the absolute path."""
        rel = (self.path.parent / self.manifest.source_run).resolve()
        if (rel / "manifest.json").is_file() or not self.manifest.source_run_abs:
            return rel
        return Path(self.manifest.source_run_abs)

    def run(self) -> TrainedModel:
        return TrainedModel.from_dir(self.source_run)

    @classmethod
    def from_manifest(cls, path: str | Path, *, verify: bool = True) -> ExportedArtifact:
        """Re-open an artifact from its ``<file>.manifest.json`` (or the file beside it).

        Raises:
            DataError/ConfigError: no or unreadable manifest, or (``verify``) the file's sha256
                does not match the manifest's.
        """
        from ..errors import DataError

        path = Path(path)
        mpath = path if path.name.endswith(".manifest.json") else path.with_name(path.name + ".manifest.json")
        if not mpath.is_file():
            raise DataError(
                "no <file>.manifest.json beside the artifact",
                path=path,
                fix="use files written by `edgetransfer export` (keep the .manifest.json beside each)",
            )
        m = ArtifactManifest.read(mpath)
        file = mpath.with_name(Path(m.path).name)
        if not file.is_file():
            raise DataError("artifact not found beside its manifest", path=file, fix="copy the file with its manifest")
        if verify and sha256_file(file) != m.sha256:
            raise DataError(
                f"the file does not match its manifest (sha256 differs from {mpath.name})",
                path=file,
                fix="re-export it, or copy the file and its .manifest.json together",
            )
        return cls(file, m.format, m.precision, m.io, m)
