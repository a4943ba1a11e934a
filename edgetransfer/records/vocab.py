"""The vocabularies records use, as enums at the boundary (ai-edge-quantizer's ``qtyping`` style).

They derive from ``str`` so a value compares equal to its JSON spelling and old documents
(plain strings) read back unchanged.
"""

from __future__ import annotations

import enum


class Precision(str, enum.Enum):
    """Numeric precision of an exported file (``--precision``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"


class Provenance(str, enum.Enum):
    """Where a figure comes from: always shown beside it."""

    MEASURED = "measured"  # on this machine
    ON_DEVICE = "on-device"  # on the device, through the profile's runner
    ESTIMATED = "estimated"  # the per-op cost model


class MeasureMode(str, enum.Enum):
    """How a target profile gets its latency (``measure:`` in the YAML)."""

    HOST = "host"
    RUNNER = "runner"
    ESTIMATE = "estimate"


class Status(str, enum.Enum):
    """The outcome of one budget check, and of a verdict."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
