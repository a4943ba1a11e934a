"""Records of the export stage: the export folder's index, the quantization doctor's attempts,
and the TFLite Micro bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import Record


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
class RecipeFile(Record):
    """``<file>.recipe.json``: everything that makes one exported file (``export --recipe`` reads it back)."""

    KIND: ClassVar[str] = "edgetransfer.recipe"
    SCHEMA: ClassVar[int] = 1

    format: str
    recipe: dict
    keep_float: tuple[str, ...] = ()
    calibration: str = "auto"
    seed: int = 0
    measured: dict = field(default_factory=dict)
