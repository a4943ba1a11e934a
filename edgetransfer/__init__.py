"""edgetransfer: transfer-learn a lightweight image model and ship it to a device.

    data -> backbones -> training -> exporter (formats, quantization) -> evaluation -> gate
    flows (check, pipeline file, sweep, quickstart) run the stages; records carry what passes between them

The functions are named for the verb (``train``, ``export``, ``validate``, ``check``), the
modules for the stage, so no public name here hides a submodule.

The public API is what ``__all__`` lists; everything else may change between releases.
Importing this package does not import TensorFlow: heavy libraries load on first use.
"""

from ._version import __version__
from .data import DataReport, Dataset, FileIssue, ImageFile
from .data import load as load_dataset
from .errors import (
    ConfigError,
    DataError,
    EdgeTransferError,
    ExportError,
    MissingDependencyError,
    RuntimeBackendError,
    ToolchainError,
    UnsafeFileError,
    UnsupportedError,
    WeightsError,
)
from .exporter import ExportedArtifact, export
from .exporter.quantization import QuantRecipe
from .exporter.quantization.diagnose import diagnose as diagnose_quantization
from .flows.check import check
from .flows.importer import import_model
from .flows.sweep import sweep
from .flows.validate import validate
from .gate import judge
from .records import Budget, QuantDiagnosis, SweepResult
from .records.measure import Measurement, ValidationReport, Verdict
from .runtime import Classifier
from .training import TrainConfig, TrainedModel, train

__all__ = [
    "__version__",
    "Budget",
    "Classifier",
    "ConfigError",
    "DataError",
    "DataReport",
    "Dataset",
    "EdgeTransferError",
    "ExportError",
    "ExportedArtifact",
    "FileIssue",
    "ImageFile",
    "Measurement",
    "MissingDependencyError",
    "QuantDiagnosis",
    "QuantRecipe",
    "RuntimeBackendError",
    "ToolchainError",
    "TrainConfig",
    "TrainedModel",
    "UnsafeFileError",
    "UnsupportedError",
    "SweepResult",
    "ValidationReport",
    "Verdict",
    "WeightsError",
    "check",
    "diagnose_quantization",
    "export",
    "judge",
    "import_model",
    "load_dataset",
    "sweep",
    "train",
    "validate",
]
