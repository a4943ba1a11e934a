"""The format registry: what each exported file type is, can do, and which code handles it.

One :class:`FormatSpec` per format, registered by the format's own module
(``formats/tflite.py``, ``formats/onnx.py``, ...): name, file suffix and its capabilities
(precisions, input layouts, int8 io types, calibration methods, weight granularities,
runtimes, packaging), plus the code that handles it: the exporter module, the per-op graph
reader, the metadata reader, the quantization doctor's sensitivity ranker. The hooks are typed
callables (the Protocols below, checked by mypy where each format registers them: optimum's
``OnnxConfig`` attributes, ai-edge-quantizer's ``algorithm_manager_api``), imported by the format's
module with TensorFlow still unimported (they import it inside); the exporter module is named and
imported on first use. The format modules load on the first question, so the app-side
``edgetransfer.runtime`` reads the registry without TensorFlow. The exporter and the quantization
doctor ask a spec and never compare format names; :func:`for_path` is the only place a file's
suffix becomes a format.

Adding a format is adding one module that calls :func:`register`, and its name to
``_MODULES`` (docs/development.md, "Adding a format or a runtime", lists what the module provides).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...errors import ConfigError
from ...records.profile import Op

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
# Computed in integers end to end. "dynamic" (dynamic-range) stores int8 weights but computes in float: its
# activations are float, quantized on the fly per op where a kernel has a hybrid path (TFLite post-training
# quantization guide, "Dynamic range quantization"), so an integer-only accelerator cannot run it.
INTEGER_PRECISIONS = ("int8", "int16x8")
_MODULES = ("tflite", "onnx", "tflm")


class OpReader(Protocol):
    """The graph's ops of a file, in execution order (latency estimates, delegate checks, profiles)."""

    def __call__(self, path: Path, /) -> list[Op]: ...


class FloatOpReader(Protocol):
    def __call__(self, path: str | Path) -> list[str]: ...


class MetadataReader(Protocol):
    """What a file says about itself: ``{}`` for one exported by something else (TensorFlow-free)."""

    def __call__(self, path: Path, /) -> dict: ...


class PrecisionReader(Protocol):
    """The precision of a file from another tool, read from its tensors."""

    def __call__(self, path: Path, /) -> str: ...


class SensitivityRanker(Protocol):
    """The ops of an int8 file, most quantization error first, as ``keep_float`` names."""

    def __call__(
        self, source: Any, path: Path, calibration: Any, *, layout: str, images: int, size_allowance: float
    ) -> list[str]: ...


class Activation16Ranker(Protocol):
    """Activation tensors of an int8 file, lowest SNR first, as ``a16:<tensor>`` entries."""

    def __call__(self, source: Any, path: Path, calibration: Any, *, layout: str, images: int) -> list[str]: ...


class TensorDiagnosisHook(Protocol):
    """Every activation tensor of an int8 file against the float model's, in graph order."""

    def __call__(self, source: Any, path: Path, images: Any, *, layout: str, meta: dict) -> list[dict]: ...


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
        op_reader: ``(path) -> list[Op]``, the graph's ops.
        metadata_reader: ``(path) -> dict``, the labels and input metadata written
            into a file (``{}`` for a file exported by something else); called by
            ``edgetransfer.runtime.read_metadata``.
        io_dtypes: input/output types an int8 file may take (``--io``), float32 last or alone.
        layouts: input layouts it writes (``--layout``), the default first; any other request
            gets the default.
        calibration_methods: int8 calibration methods its quantizer has, the default first (the
            doctor tries the others when int8 loses too much).
        weight_granularities: int8 weight quantization it can choose from (``per_channel``,
            ``per_tensor``); the doctor tries the other one when there are two.
        sensitivity_ranker: ``(source, path, calibration, *, layout, images,
            size_allowance) -> list[str]``: the ops of an int8 file, most quantization error
            first, as names its exporter's ``keep_float`` takes; ``""`` when it has none.
        activation16_ranker: ``(source, path, calibration, *, layout, images) ->
            list[str]``: activation tensors of an int8 file, lowest signal-to-noise ratio against the
            float graph first, that its int8 writer can keep at 16 bits (``keep_float`` entries
            ``a16:<tensor>``, int8 weights unchanged); ``""`` when its quantizer cannot mix 8- and
            16-bit activations per tensor (the TFLite converter: int16x8 is whole-model only); ``None`` then.
        tensor_diagnosis: ``(source, path, images, *, layout, meta) -> list[dict]``:
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
        float_op_reader: ``(path) -> list[str]``: the ops of an int8 file that compute in float
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
    op_reader: OpReader
    metadata_reader: MetadataReader
    io_dtypes: tuple[str, ...] = ("float32",)
    layouts: tuple[str, ...] = ("nhwc",)
    calibration_methods: tuple[str, ...] = ("minmax",)
    weight_granularities: tuple[str, ...] = ("per_channel",)
    sensitivity_ranker: SensitivityRanker | None = None
    precision_reader: PrecisionReader | None = None  # a file from another tool: its precision
    standard_metadata_reader: MetadataReader | None = None  # {labels, normalization} other tools write
    activation16_ranker: Activation16Ranker | None = None
    tensor_diagnosis: TensorDiagnosisHook | None = None
    quantizer_options: tuple[str, ...] = ()
    float_op_reader: FloatOpReader | None = None
    converters: tuple[str, ...] = ()
    in_all: bool = True
    description: str = ""
    packages: str | None = None

    def op_reader_fn(self) -> OpReader:
        return self.op_reader

    def metadata_reader_fn(self) -> MetadataReader:
        return self.metadata_reader

    def precision_reader_fn(self) -> PrecisionReader:
        if self.precision_reader is None:
            raise ConfigError(f"{self.name} files cannot be read as models", fix="pass a .tflite or .onnx file")
        return self.precision_reader

    def standard_metadata_reader_fn(self) -> MetadataReader | None:
        return self.standard_metadata_reader

    def sensitivity_ranker_fn(self) -> SensitivityRanker | None:
        """The ranker, or ``None`` when the format has none."""
        return self.sensitivity_ranker

    def activation16_ranker_fn(self) -> Activation16Ranker | None:
        """The 16-bit activation ranker, or ``None`` when the format cannot mix activation widths."""
        return self.activation16_ranker

    def tensor_diagnosis_fn(self) -> TensorDiagnosisHook | None:
        """The per-tensor diagnosis, or ``None`` when the format has none."""
        return self.tensor_diagnosis

    def float_op_reader_fn(self) -> FloatOpReader | None:
        """The float-op reader, or ``None`` when the format has none."""
        return self.float_op_reader

    def layout_for(self, requested: str) -> str:
        """``requested`` where the format writes it, else its default layout."""
        return requested if requested in self.layouts else self.layouts[0]

    def exporter_module(self) -> Any:
        return importlib.import_module(self.exporter)


_REGISTRY: dict[str, FormatSpec] = {}
_LOADED = False


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
