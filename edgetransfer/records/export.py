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
class ExportIndex(Record):
    """``<export>/manifest.json``: the run the files came from (relative to this folder) and the files."""

    KIND: ClassVar[str] = "edgetransfer.export"
    SCHEMA: ClassVar[int] = 2

    source_run: str
    artifacts: tuple[str, ...]
    calibration: CalibrationInfo | None = None


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
