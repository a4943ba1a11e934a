"""The vocabularies records use, as enums at the boundary (ai-edge-quantizer's ``qtyping`` style).

They derive from ``str`` so a value compares equal to its JSON spelling and old documents
(plain strings) read back unchanged.
"""

from __future__ import annotations

import enum


class _Vocab(str, enum.Enum):
    """A ``str`` enum that prints as its value (``f"{Status.PASSED}"`` is ``passed``)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Precision(_Vocab):
    """Numeric precision of an exported file (``--precision``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"


class Provenance(_Vocab):
    """Where a figure comes from: always shown beside it."""

    MEASURED = "measured"  # on this machine
    ON_DEVICE = "on-device"  # on the device, through the profile's runner
    ESTIMATED = "estimated"  # the per-op cost model


class MeasureMode(_Vocab):
    """How a target profile gets its latency (``measure:`` in the YAML)."""

    HOST = "host"
    RUNNER = "runner"
    ESTIMATE = "estimate"


class Status(_Vocab):
    """The outcome of one budget check, and of a verdict."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
