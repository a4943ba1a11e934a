"""Latency of one model on one target, with where the figure comes from: a record that crosses stages and disk."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

# Every figure says where it comes from: measured on this machine, measured on the device
# by the target's runner, or estimated by the cost model.
MEASURED, ON_DEVICE, ESTIMATED = "measured", "on-device", "estimated"


@dataclass(frozen=True)
class Latency:
    """Latency of one model on one target, in milliseconds, with where it came from."""

    # Checked when a report is read (records.base): no measurement gives a zero or negative time.
    BOUNDS: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("p50", "p90", "p99", "mean", "samples", "threads"), "positive"),
        **dict.fromkeys(("std", "runs", "load_ms", "peak_memory_mb"), "nonnegative"),
    }

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    runs: int
    provenance: str
    load_ms: float | None = None
    peak_memory_mb: float | None = None
    threads: int | None = None
    samples: tuple[float, ...] = field(default=(), repr=False)
    host: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)

    def to_json(self, samples: bool = False) -> dict:
        d = asdict(self)
        if not samples:
            d.pop("samples")
        else:
            d["samples"] = list(self.samples)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Latency:
        d = dict(d)
        d["samples"] = tuple(d.get("samples") or ())
        names = {f.name for f in fields(cls)}  # not __dataclass_fields__: it also lists the BOUNDS ClassVar
        return cls(**{k: v for k, v in d.items() if k in names})
