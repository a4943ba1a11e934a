"""edgetransfer: transfer-learn a lightweight image model and ship it to a device.

The public API is what ``__all__`` lists; everything else may change between releases.
"""
from ._version import __version__
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

__all__ = [
    "__version__",
    "ConfigError",
    "DataError",
    "DataReport",
    "Dataset",
    "EdgeTransferError",
    "ExportError",
    "FileIssue",
    "ImageFile",
    "MissingDependencyError",
    "RuntimeBackendError",
    "ToolchainError",
    "UnsafeFileError",
    "UnsupportedError",
    "WeightsError",
    "load_dataset",
]
