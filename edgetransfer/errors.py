"""One error hierarchy; the CLI maps each class to an exit code.

Library code raises these and never exits; only :mod:`edgetransfer.cli` catches them.
Every message says what (file or option), the problem, and the fix.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_BUDGET = 1
EXIT_USAGE = 2
EXIT_TOOLCHAIN = 3
EXIT_INCONCLUSIVE = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class EdgeTransferError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = EXIT_USAGE

    def __init__(self, problem: str, *, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.path}: {self.problem}" if self.path else self.problem
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class ConfigError(EdgeTransferError):
    """A bad option, config file or target profile (exit 2)."""


class DataError(EdgeTransferError):
    """A dataset that cannot be used as given (exit 2)."""


class UnsupportedError(EdgeTransferError):
    """A combination the toolkit refuses up front, e.g. a format x precision (exit 2)."""


class WeightsError(EdgeTransferError):
    """Weights that are missing, unreachable or do not fit the architecture (exit 2)."""


class UnsafeFileError(EdgeTransferError):
    """A file that tries to do more than hold data (exit 2)."""


class ToolchainError(EdgeTransferError):
    """A converter, runtime or library failed or is missing (exit 3)."""

    exit_code = EXIT_TOOLCHAIN


class DiskFullError(ToolchainError):
    """The disk filled up while a native library (HDF5 under Keras) was writing (exit 3).

    HDF5 keeps the file whose write failed open and flushes it again when the process ends,
    which crashes (SIGSEGV); the command line therefore exits at once after reporting this
    error. A Python caller should end its process soon after, with ``os._exit``.
    """

    exit_at_once = True


class ExportError(ToolchainError):
    """A converter failed to write an artifact (exit 3)."""


class RuntimeBackendError(ToolchainError):
    """An inference runtime failed to load or run a model (exit 3)."""


class MissingDependencyError(ToolchainError):
    """An optional heavy library is not installed (exit 3)."""
