"""edgetransfer: transfer-learn a lightweight image model and ship it to a device.

    data -> backbones -> train -> export -> validate -> check

The public API is what ``__all__`` lists; everything else may change between releases.
Importing this package does not import TensorFlow: heavy libraries load on first use.
"""
from ._version import __version__
from .check import Budget, Verdict, check
from .data import Dataset, DataReport, FileIssue, ImageFile, load as load_dataset
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
from .export import ExportedArtifact, export
from .quantize import QuantRecipe
from .runtime import Classifier
from .train import TrainConfig, TrainedModel, train
from .validate import ValidationReport, validate

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
    "MissingDependencyError",
    "QuantRecipe",
    "RuntimeBackendError",
    "ToolchainError",
    "TrainConfig",
    "TrainedModel",
    "UnsafeFileError",
    "UnsupportedError",
    "ValidationReport",
    "Verdict",
    "WeightsError",
    "check",
    "export",
    "load_dataset",
    "train",
    "validate",
]
