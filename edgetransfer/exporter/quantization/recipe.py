"""Quantization recipes: named presets, refused up front where a format cannot do them.

A recipe is a frozen record built by a named constructor (``QuantRecipe.int8(...)``);
which (format, precision) pairs exist is stated once here and refused up front otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError, UnsupportedError
from .. import formats
from ..formats import PRECISIONS

IO_DTYPES = ("uint8", "int8", "float32")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Changes to the model's own weights before any format traces it (``weights.py``): each keeps every op integer.
WEIGHT_REMEDIES = ("bias_correction", "learned_rounding")


@dataclass(frozen=True)
class QuantRecipe:
    """How one artifact is quantized.

    Attributes:
        precision: fp32, fp16 (float16 weights), dynamic (int8 weights, float activations),
            int8 (full integer, calibrated), int16x8 (int16 activations, int8 weights).
        io_dtype: TFLite int8 input/output type; ``uint8`` lets raw camera bytes in.
        per_channel: ONNX int8 weights per output channel (TFLite always is).
        method: ONNX int8 calibration: minmax, entropy or percentile.
        calibration_size: images used for calibration.
        options: int8 writer options the format offers (``FormatSpec.quantizer_options``: range, scale,
            bias and weight-rounding fixes, e.g. ONNX ``float_bias``), as the quantization doctor chose them.
        qat_epochs: int8: epochs of quantization-aware fine-tuning before writing (``quantization/qat.py``;
            0 = none); every format's int8 file is then written from the fine-tuned weights.
        weights: int8: format-independent changes to the (folded) weights before writing, in this order
            (:data:`WEIGHT_REMEDIES`: empirical bias correction, learned rounding), ``quantization/weights.py``.
    """

    precision: str
    io_dtype: str = "float32"
    per_channel: bool = True
    method: str = "minmax"
    calibration_size: int = 200
    options: tuple[str, ...] = ()
    qat_epochs: int = 0
    weights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(str(o) for o in self.options))  # a JSON list reads back equal
        object.__setattr__(self, "weights", tuple(str(o) for o in self.weights))
        if (self.qat_epochs or self.weights) and self.precision != "int8":
            raise UnsupportedError(
                f"quantization-aware training and weight remedies are int8 recipes (got {self.precision})",
                fix="drop --qat, or export --precision int8",
            )
        unknown = [w for w in self.weights if w not in WEIGHT_REMEDIES]
        if unknown:
            raise ConfigError(f"unknown weight remedy {', '.join(unknown)}", fix=f"use {', '.join(WEIGHT_REMEDIES)}")
        if self.qat_epochs:
            from .qat import check_epochs

            check_epochs(self.qat_epochs)
        if self.options and self.precision != "int8":
            raise UnsupportedError(
                f"quantizer options {', '.join(self.options)} are int8 options (got {self.precision})",
                fix="drop the options, or export --precision int8",
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}", fix=f"use one of {', '.join(PRECISIONS)}")
        if self.io_dtype not in IO_DTYPES:
            raise ConfigError(f"--io {self.io_dtype!r}", fix=f"use one of {', '.join(IO_DTYPES)}")
        if self.io_dtype != "float32" and self.precision != "int8":
            raise UnsupportedError(
                f"--io {self.io_dtype} needs full-integer int8 (got {self.precision})",
                fix="drop --io, or export --precision int8",
            )
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"calibration method {self.method!r}", fix=f"use one of {', '.join(CALIBRATION_METHODS)}"
            )
        if not 1 <= self.calibration_size <= 10_000:
            raise ConfigError(f"--calibration-size {self.calibration_size}", fix="use 100 to 500 images")

    @classmethod
    def fp32(cls) -> QuantRecipe:
        return cls("fp32")

    @classmethod
    def fp16(cls) -> QuantRecipe:
        return cls("fp16")

    @classmethod
    def dynamic(cls) -> QuantRecipe:
        return cls("dynamic")

    @classmethod
    def int8(
        cls,
        io: str = "uint8",
        *,
        per_channel: bool = True,
        method: str = "minmax",
        calibration_size: int = 200,
        qat_epochs: int = 0,
    ) -> QuantRecipe:
        return cls("int8", io, per_channel, method, calibration_size, qat_epochs=qat_epochs)

    @classmethod
    def int16x8(cls, calibration_size: int = 200) -> QuantRecipe:
        return cls("int16x8", calibration_size=calibration_size)

    @classmethod
    def named(cls, precision: str, **kwargs) -> QuantRecipe:
        """The preset for ``precision`` with options applied where they mean something."""
        if precision == "int8":
            return cls.int8(**{k: v for k, v in kwargs.items() if v is not None})
        if precision == "int16x8":
            return cls.int16x8(kwargs.get("calibration_size") or 200)
        return cls(precision)  # qat_epochs: int8 only, the other precisions of one export are written plain

    @property
    def changes_weights(self) -> bool:
        """The model's weights change before tracing (QAT, bias correction, learned rounding)."""
        return bool(self.qat_epochs or self.weights)

    @property
    def needs_calibration(self) -> bool:
        return self.precision in ("int8", "int16x8")

    def check(self, fmt: str) -> None:
        """Refuse a (format, precision) pair the toolchain cannot produce."""
        spec = formats.get(fmt)
        if self.precision not in spec.precisions:
            able = [f for f in formats.names() if self.precision in formats.get(f).precisions]
            raise UnsupportedError(
                f"{fmt} cannot do precision {self.precision}",
                fix=f"{fmt} supports {', '.join(spec.precisions)}; {self.precision} needs "
                f"--format {' or '.join(able) or '(none)'}",
            )
        if self.io_dtype not in spec.io_dtypes:
            able = [f for f in formats.file_formats() if self.io_dtype in formats.get(f).io_dtypes]
            raise UnsupportedError(
                f"--io {self.io_dtype} is {'/'.join(able)} only: {fmt} int8 keeps "
                f"{'/'.join(spec.io_dtypes)} input and output",
                fix=f"drop --io for --format {fmt}",
            )
        unknown = [o for o in self.options if o not in spec.quantizer_options]
        if unknown:
            raise UnsupportedError(
                f"{fmt} int8 has no quantizer option {', '.join(unknown)}",
                fix=f"{fmt} offers {', '.join(spec.quantizer_options) or 'none'}",
            )
