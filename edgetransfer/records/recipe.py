"""Quantization recipes as records: how one file is quantized, and the ``<file>.recipe.json`` that replays it.

A recipe is a frozen record built by a named constructor (``QuantRecipe.int8(...)``), validated
in ``__post_init__`` (ai-edge-quantizer's ``recipe.py`` shape). Which (format, precision) pairs a
format can produce is the format registry's answer (:func:`edgetransfer.exporter.quantization.recipe.check`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import ConfigError, EdgeTransferError, UnsupportedError
from .base import Record
from .vocab import Precision

PRECISIONS = tuple(p.value for p in Precision)
IO_DTYPES = ("uint8", "int8", "float32")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# The one calibration-size default (export, the pipeline file, the sweep): post-training int8 needs
# ~100-500 representative images (TensorFlow Lite post-training quantization guide); 200 is inside
# that range at a few seconds of calibration for a 224-px model.
DEFAULT_CALIBRATION_SIZE = 200
# Changes to the model's own weights before any format traces it (exporter/quantization/weights.py): each keeps
# every op integer.
WEIGHT_REMEDIES = ("bias_correction", "learned_rounding")
MAX_QAT_EPOCHS = 50  # QAT fine-tunes a trained model: a few epochs (exporter/quantization/qat.py)


@dataclass(frozen=True)
class QuantRecipe(Record):
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
        qat_epochs: int8: epochs of quantization-aware fine-tuning before writing (``exporter/quantization/qat.py``;
            0 = none); every format's int8 file is then written from the fine-tuned weights.
        weights: int8: format-independent changes to the folded weights before writing (:data:`WEIGHT_REMEDIES`:
            empirical bias correction, learned rounding; ``exporter/quantization/weights.py``).
    """

    precision: str
    io_dtype: str = "float32"
    per_channel: bool = True
    method: str = "minmax"
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
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
        q = self.qat_epochs
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= MAX_QAT_EPOCHS:
            raise ConfigError(
                f"--qat-epochs {q!r}: not a whole number from 1 to {MAX_QAT_EPOCHS}",
                fix="QAT fine-tunes a trained model: 2 to 5 epochs is typical (e.g. --qat-epochs 3)",
            )
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
        calibration_size: int = DEFAULT_CALIBRATION_SIZE,
        qat_epochs: int = 0,
    ) -> QuantRecipe:
        return cls("int8", io, per_channel, method, calibration_size, qat_epochs=qat_epochs)

    @classmethod
    def int16x8(cls, calibration_size: int = DEFAULT_CALIBRATION_SIZE) -> QuantRecipe:
        return cls("int16x8", calibration_size=calibration_size)

    @classmethod
    def named(cls, precision: str, **kwargs) -> QuantRecipe:
        """The preset for ``precision`` with options applied where they mean something."""
        if precision == "int8":
            return cls.int8(**{k: v for k, v in kwargs.items() if v is not None})
        if precision == "int16x8":
            return cls.int16x8(kwargs.get("calibration_size") or DEFAULT_CALIBRATION_SIZE)
        return cls(precision)

    @property
    def changes_weights(self) -> bool:
        """The model's weights change before tracing (QAT, bias correction, learned rounding)."""
        return bool(self.qat_epochs or self.weights)

    @property
    def needs_calibration(self) -> bool:
        return self.precision in ("int8", "int16x8")

    def to_dict(self) -> dict:
        """The JSON-shaped dict attempts and manifests hold (lists, so one read back is equal)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class RecipeFile(Record):
    """``<file>.recipe.json``: everything that makes one exported file (``export --recipe`` reads it back):
    format, recipe, ops in float, calibration source and seed, and what the search measured."""

    KIND: ClassVar[str] = "edgetransfer.recipe"
    SCHEMA: ClassVar[int] = 1

    format: str
    recipe: QuantRecipe
    keep_float: tuple[str, ...] = ()
    calibration: str = "auto"
    seed: int = 0
    measured: dict = field(default_factory=dict)

    @classmethod
    def replay(cls, path: str | Path, *, conflicts: bool = False) -> RecipeFile:
        """Read a ``<file>.recipe.json`` to write the file again (``export --recipe``).

        Raises:
            ConfigError: missing, unreadable or not a recipe file, or given with ``--max-accuracy-drop``.
        """
        path = Path(path)
        if conflicts:
            raise ConfigError(
                "--recipe replays a file; --max-accuracy-drop searches for one", path=path, fix="give one of them"
            )
        try:
            return cls.read(path)
        except (ConfigError, UnsupportedError) as exc:
            bad = "bad recipe in the file" if "recipe" in exc.problem.lower() else "not a recipe file"
            raise ConfigError(
                f"{bad}: {exc.problem}",
                path=path,
                fix=exc.fix or "pass a <file>.recipe.json written by `edgetransfer export --max-accuracy-drop`",
            ) from None
        except EdgeTransferError:
            raise
