"""The format registry: what each exported file type is, can do, and which code handles it.

One :class:`FormatSpec` per format, registered by the format's own module
(``formats/tflite.py``, ``formats/onnx.py``, ...): name, file suffix and its capabilities
(precisions, input layouts, int8 io types, calibration methods, weight granularities,
runtimes, packaging), plus the code that handles it: the exporter module, the per-op graph
reader, the metadata reader, the quantization doctor's sensitivity ranker. Code is referenced
by ``module:function`` and imported on first use, so reading the registry never imports
TensorFlow (the app-side ``edgetransfer.runtime`` uses it). The exporter and the quantization
doctor ask a spec and never compare format names.

Adding a format is adding one module that calls :func:`register`, and its name to
``_MODULES`` (docs/development.md, "Adding a format or a runtime", lists what the module provides).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
# Computed in integers end to end. "dynamic" (dynamic-range) stores int8 weights but computes in float: its
# activations are float, quantized on the fly per op where a kernel has a hybrid path (TFLite post-training
# quantization guide, "Dynamic range quantization"), so an integer-only accelerator cannot run it.
INTEGER_PRECISIONS = ("int8", "int16x8")
_MODULES = ("tflite", "onnx", "tflm")


@dataclass(frozen=True)
class FormatSpec:
    """A file format edgetransfer exports and runs.

    Attributes:
        name: the ``--format`` name.
        suffix: file suffix, with the dot.
        precisions: precisions its exporter can write.
        runtimes: runtime names that run it (see ``edgetransfer.runtime.spec``), the default first.
        exporter: module with ``make_source(model, size, layout, workdir, dynamic_batch)`` and
            ``write(source, recipe, calibration, meta, path, *, keep_float=())`` (or, for a
            packaging, ``package(artifact_path, out_dir)``).
        op_reader: ``module:function(path) -> list[graphops.Op]``, the graph's ops.
        metadata_reader: ``module:function(path) -> dict``, the labels and input metadata written
            into a file (``{}`` for a file exported by something else); called by
            ``edgetransfer.runtime.read_metadata``.
        io_dtypes: input/output types an int8 file may take (``--io``), float32 last or alone.
        layouts: input layouts it writes (``--layout``), the default first; any other request
            gets the default.
        calibration_methods: int8 calibration methods its quantizer has, the default first (the
            doctor tries the others when int8 loses too much).
        weight_granularities: int8 weight quantization it can choose from (``per_channel``,
            ``per_tensor``); the doctor tries the other one when there are two.
        sensitivity_ranker: ``module:function(source, path, calibration, *, layout, images,
            size_allowance) -> list[str]``: the ops of an int8 file, most quantization error
            first, as names its exporter's ``keep_float`` takes; ``""`` when it has none.
        activation16_ranker: ``module:function(source, path, calibration, *, layout, images) ->
            list[str]``: activation tensors of an int8 file, lowest signal-to-noise ratio against the
            float graph first, that its int8 writer can keep at 16 bits (``keep_float`` entries
            ``a16:<tensor>``, int8 weights unchanged); ``""`` when its quantizer cannot mix 8- and
            16-bit activations per tensor (the TFLite converter: int16x8 is whole-model only).
        tensor_diagnosis: ``module:function(source, path, images, *, layout, meta) -> list[dict]``:
            every activation tensor of the int8 file ``path`` against the same tensor of the float
            model traced in ``source``, on ``images`` (RGB [0, 255] NHWC), in graph order: ``tensor``,
            ``node``, ``op_type``, ``snr_db`` and ``cosine`` (the error accumulated up to it), ``added``
            (its noise-to-signal ratio minus its inputs' worst: the error this op adds), ``fix_float``
            (the ``keep_float`` entry that leaves its op in float, ``""`` if none) and ``fix_a16`` (the
            entry keeping it at 16 bits, ``""`` where the format cannot); ``meta`` is the file's
            metadata. ``""`` when the format has none (``edgetransfer quant diagnose``).
        quantizer_options: int8 writer options (``QuantRecipe.options``) that cost less than float: scale,
            range, bias and weight-rounding fixes its quantizer offers; the doctor tries each, in this
            order, before 16-bit activations and float ops, and keeps the ones that move the error.
        float_op_reader: ``module:function(path) -> list[str]``: the ops of an int8 file that compute in float
            (what an integer-only target cannot take whole), ``[]`` for a file integer end to end
            (``formats/integer_check.py``); ``""`` when the format has none.
        converters: Python packages whose versions each file's manifest records (TensorFlow
            always is).
        in_all: exported by ``--format all``.
        description: one line for ``--help`` and the docs.
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
    layouts: tuple[str, ...] = ("nhwc",)
    calibration_methods: tuple[str, ...] = ("minmax",)
    weight_granularities: tuple[str, ...] = ("per_channel",)
    sensitivity_ranker: str = ""
    precision_reader: str = ""  # module:function(path) -> precision of a file from another tool
    standard_metadata_reader: str = ""  # module:function(path) -> {labels, normalization} others write
    activation16_ranker: str = ""
    tensor_diagnosis: str = ""
    quantizer_options: tuple[str, ...] = ()
    float_op_reader: str = ""
    converters: tuple[str, ...] = ()
    in_all: bool = True
    description: str = ""
    packages: str | None = None

    def op_reader_fn(self) -> Any:
        return _resolve(self.op_reader)

    def metadata_reader_fn(self) -> Any:
        return _resolve(self.metadata_reader)

    def precision_reader_fn(self) -> Any:
        if not self.precision_reader:
            raise ConfigError(f"{self.name} files cannot be read as models", fix="pass a .tflite or .onnx file")
        return _resolve(self.precision_reader)

    def standard_metadata_reader_fn(self) -> Any | None:
        return _resolve(self.standard_metadata_reader) if self.standard_metadata_reader else None

    def sensitivity_ranker_fn(self) -> Any | None:
        """The ranker, or ``None`` when the format has none."""
        return _resolve(self.sensitivity_ranker) if self.sensitivity_ranker else None

    def activation16_ranker_fn(self) -> Any | None:
        """The 16-bit activation ranker, or ``None`` when the format cannot mix activation widths."""
        return _resolve(self.activation16_ranker) if self.activation16_ranker else None

    def tensor_diagnosis_fn(self) -> Any | None:
        """The per-tensor diagnosis, or ``None`` when the format has none."""
        return _resolve(self.tensor_diagnosis) if self.tensor_diagnosis else None

    def float_op_reader_fn(self) -> Any | None:
        """The float-op reader, or ``None`` when the format has none."""
        return _resolve(self.float_op_reader) if self.float_op_reader else None

    def layout_for(self, requested: str) -> str:
        """``requested`` where the format writes it, else its default layout."""
        return requested if requested in self.layouts else self.layouts[0]

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
