"""Record of ``edgetransfer quant diagnose``: where an int8 file's error comes from, tensor by tensor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Record


@dataclass(frozen=True)
class TensorDiagnosis(Record):
    """One activation tensor of an int8 file against the float model's same tensor.

    ``snr_db`` / ``cosine``: the error accumulated up to this tensor (int8 file vs float model, same
    images); ``added_db``: the error its op adds on top of its inputs' (as an SNR: lower is worse).
    ``float_fixed_accuracy`` / ``a16_fixed_accuracy``: the held-out accuracy of the file written again
    with this tensor's op in float / this tensor at 16 bits (measured; ``None`` when not tried).
    """

    tensor: str
    op_type: str
    layer: str
    snr_db: float
    cosine: float
    added_db: float
    node: str = ""
    position: int = 0  # in graph order (the record lists tensors worst first)
    fix_float: str = ""
    fix_a16: str = ""
    float_fixed_accuracy: float | None = None
    a16_fixed_accuracy: float | None = None
    fix_error: str = ""


@dataclass(frozen=True)
class QuantDiagnosis(Record):
    """``edgetransfer quant diagnose FILE --json``: every activation tensor of an int8 file, worst first.

    ``tensors`` are ordered by the error their op adds (``added_db``, lowest first); the first ``top``
    carry the measured accuracy of fixing each. ``replay``: whether the file written again from its
    recipe is byte-identical to ``file`` (``exact``), or else its accuracy; ``fix_baseline_accuracy``: the
    file written through the fixes' own per-op path with nothing more in float (TFLite: the MLIR quantizer,
    not the converter's default path), each fix's fair comparison.
    """

    KIND: ClassVar[str] = "edgetransfer.quant-diagnosis"
    SCHEMA: ClassVar[int] = 1

    file: str
    format: str
    source_run: str
    held_out: dict
    images: int
    tensors: tuple[TensorDiagnosis, ...]
    top: int = 0
    float_accuracy: float | None = None
    file_accuracy: float | None = None
    replay: str = ""
    fix_baseline_accuracy: float | None = None  # FILE written the fixes' way with nothing more in float
    keep_float: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def accuracy_drop(self) -> float | None:
        """Points the file loses against the float model on the held-out data."""
        if self.float_accuracy is None or self.file_accuracy is None:
            return None
        return round(100 * (self.float_accuracy - self.file_accuracy), 3)
