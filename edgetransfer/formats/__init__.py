"""The format registry: what each exported file type is, can do, and which code handles it.

One :class:`FormatSpec` per format, registered by the format's own module
(``formats/tflite.py``, ``formats/onnx.py``, ...): name, file suffix, precisions, the
exporter module, the runtimes that run it, the per-op graph reader and the metadata
reader. Everything is referenced by dotted name and imported on first use, so reading the
registry never imports TensorFlow (the app-side ``edgetransfer.runtime`` uses it).

Adding a format is adding one module that calls :func:`register`, and its name to
``_MODULES``.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
_MODULES = ("tflite", "onnx", "tflm")


@dataclass(frozen=True)
class FormatSpec:
    """A file format edgetransfer exports and runs.

    Attributes:
        name: the ``--format`` name.
        suffix: file suffix, with the dot.
        precisions: precisions its exporter can write.
        io_dtypes: input/output types an int8 file may take (``--io``).
        runtimes: runtime names that run it (see ``edgetransfer.runtime``), the default first.
        exporter: module with ``Source(model, run, layout, workdir)`` and ``write(...)``.
        op_reader: ``module:function`` returning the graph's ops (``graphops.Op``).
        metadata_reader: ``module:function`` reading labels and input metadata from a file.
        in_all: exported by ``--format all``.
        packages: for a format that packages another's file (TFLM: a full-int8 ``.tflite``
            as C source for a microcontroller), that format's name; its exporter module has
            ``package(artifact_path, out_dir)`` instead of ``make_source``/``write``.
    """

    name: str
    suffix: str
    precisions: tuple[str, ...]
    runtimes: tuple[str, ...]
    exporter: str
    op_reader: str
    metadata_reader: str
    io_dtypes: tuple[str, ...] = ("float32",)
    in_all: bool = True
    description: str = ""
    packages: str | None = None

    def op_reader_fn(self) -> Any:
        return _resolve(self.op_reader)

    def metadata_reader_fn(self) -> Any:
        return _resolve(self.metadata_reader)

    def exporter_module(self) -> Any:
        return importlib.import_module(self.exporter)


_REGISTRY: dict[str, FormatSpec] = {}
_LOADED = False


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def register(spec: FormatSpec) -> FormatSpec:
    """Add ``spec`` to the registry (called by each format module at import)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"format {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> dict[str, FormatSpec]:
    global _LOADED
    if not _LOADED:
        for name in _MODULES:
            importlib.import_module(f"{__name__}.{name}")
        _LOADED = True
    return _REGISTRY


def names() -> tuple[str, ...]:
    return tuple(_load())


def file_formats() -> tuple[str, ...]:
    """Formats whose files runtimes load (not packagings such as TFLM C source)."""
    return tuple(n for n, s in _load().items() if s.packages is None)


def all_formats() -> tuple[str, ...]:
    """The formats ``--format all`` exports."""
    return tuple(n for n, s in _load().items() if s.in_all)


def get(name: str) -> FormatSpec:
    """The spec of ``name``; an unknown one names the known ones."""
    reg = _load()
    if name not in reg:
        close = difflib.get_close_matches(name, reg, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown format {name!r}", fix=f"{hint}use one of {', '.join(reg)} (or all)")
    return reg[name]


def for_path(path: str | Path) -> FormatSpec:
    """The spec of a file, by suffix."""
    suffix = Path(path).suffix.lower()
    for spec in _load().values():
        if spec.suffix == suffix:
            return spec
    known = ", ".join(s.suffix for s in _load().values())
    raise ConfigError(
        f"no format for {suffix or 'files without a suffix'!r}",
        path=path,
        fix=f"pass a file edgetransfer exports ({known})",
    )
