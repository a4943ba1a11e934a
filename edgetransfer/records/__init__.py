"""Every record that crosses a stage or touches disk: frozen, with a kind, a schema version and
``to_json`` / ``from_json`` that refuse unknown or missing keys (the shape of ai-edge-quantizer's
``qtyping.py``: one place for the types, owned by no producer).

- ``base``: the :class:`Record` mixin and its strict decoder.
- ``vocab``: the vocabularies (precision, provenance, measure mode, status) as enums.
- ``run``: the run manifest and the exported file's manifest.
- ``budget``: the one budget type and its merge rule.
- ``measure``: measurements, validation report, checks and verdicts.
- ``export``: export index, quantization recipe and attempts, TFLM bundle.
- ``flows``: sweep points and results, pipeline state.
- ``quant``: the per-tensor diagnosis of an int8 file.
"""

from .base import Record
from .budget import DEFAULT_PICK_ACCURACY_DROP, Budget
from .export import Attempt, CalibrationInfo, ExportedArtifact, ExportIndex, FloatReference, TFLMBundle
from .flows import (
    CheckSpec,
    ExportSpec,
    Grid,
    PipelineFile,
    PipelineState,
    SweepPoint,
    SweepResult,
    SweepSpec,
    SweepState,
    SweepStats,
    SweepTeacher,
    TargetLatency,
    ValidateSpec,
)  # noqa: E501
from .measure import Best, Check, Measurement, Reference, ValidationReport, Verdict
from .quant import QuantDiagnosis, TensorDiagnosis
from .recipe import DEFAULT_CALIBRATION_SIZE, QuantRecipe, RecipeFile
from .run import ArtifactManifest, DataInfo, IOSpec, Metrics, RunManifest

__all__ = [
    "DEFAULT_CALIBRATION_SIZE",
    "DEFAULT_PICK_ACCURACY_DROP",
    "ArtifactManifest",
    "Attempt",
    "Best",
    "Budget",
    "CalibrationInfo",
    "Check",
    "ExportIndex",
    "ExportedArtifact",
    "FloatReference",
    "Measurement",
    "RecipeFile",
    "Reference",
    "TFLMBundle",
    "ValidationReport",
    "Verdict",
    "DataInfo",
    "IOSpec",
    "Metrics",
    "Record",
    "RunManifest",
    "by_kind",
    "CheckSpec",
    "ExportSpec",
    "Grid",
    "PipelineFile",
    "PipelineState",
    "SweepPoint",
    "SweepResult",
    "SweepSpec",
    "SweepState",
    "SweepStats",
    "SweepTeacher",
    "TargetLatency",
    "ValidateSpec",
    "QuantDiagnosis",
    "QuantRecipe",
    "TensorDiagnosis",
]


def by_kind(kind: str) -> type[Record]:
    """The record class written with ``kind`` (``edgetransfer.run``, ``edgetransfer.validation``, ...).

    Raises:
        ConfigError: no record has that kind.
    """
    from ..errors import ConfigError

    def subclasses(cls: type[Record]) -> list[type[Record]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    kinds = {c.KIND: c for c in subclasses(Record) if c.KIND}
    if kind not in kinds:
        raise ConfigError(f"no edgetransfer record has kind {kind!r}", fix=f"known kinds: {', '.join(sorted(kinds))}")
    return kinds[kind]
