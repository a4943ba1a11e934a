"""Per-op profiles: where the milliseconds of one file on one runtime go.

:class:`OpProfile` is what :func:`edgetransfer.runtime.dispatch.profile` returns and what a
:class:`~edgetransfer.records.measure.Measurement` carries (``validate --profile``): each op as the
runtime ran it (:class:`OpTime`), joined to the graph's own op (kind, shape, MACs, bytes, the Keras
layer it came from) and rated against this host's measured GEMM peak. A runtime that cannot
profile says so (``supported=False`` and the reason) rather than inventing a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .base import Record


@dataclass(frozen=True)
class OpTime(Record):
    """One op as a runtime ran it, with what the graph says about it (zeros where not joined).

    Attributes:
        time_ms: mean time per run; ``share``: of the ops' sum.
        kernel: the kernel the runtime picked (OpenVINO's ``brgconv_avx512_f32``), where it says.
        kind / shape / macs / weight_bytes / act_bytes: the graph op's (:mod:`edgetransfer.exporter.formats.graphops`).
        layer: the Keras layer the op came from, where its name says (tf2onnx and the TFLite
            converter keep the layer's name scope: ``model/block1a_dwconv/depthwise`` -> ``block1a_dwconv``).
        gmacs / peak_share: achieved GMAC/s and its share of the host's peak of ``precision``.
    """

    name: str
    type: str
    time_ms: float
    share: float
    kernel: str = ""
    kind: str = ""
    shape: tuple[int, ...] = ()
    macs: int = 0
    weight_bytes: int = 0
    act_bytes: int = 0
    precision: str = "fp32"
    gmacs: float | None = None
    peak_share: float | None = None
    layer: str = ""

    @property
    def lost_ms(self) -> float:
        """Milliseconds above what the op would take at the peak rate (all of it for a 0-MAC op)."""
        if self.gmacs and self.peak_share:
            return self.time_ms * (1.0 - min(1.0, self.peak_share))
        return self.time_ms


@dataclass(frozen=True)
class OpProfile(Record):
    """Per-op mean time of one file on one runtime at a thread count, worst first.

    Attributes:
        total_ms: the ops' sum per run; ``wall_ms``: the whole run's mean (the rest is the
            runtime's and Python's own time between ops).
        peaks: ``{"fp32": GMAC/s, "int8": GMAC/s}`` of this host at ``threads`` (empty on a device).
        settings: the runtime settings the profiled session ran with (``validate --tune``'s winner).
        supported / reason: ``False`` and why, where the runtime gives no per-op times.
    """

    KIND: ClassVar[str] = "edgetransfer.op_profile"
    SCHEMA: ClassVar[int] = 1
    DERIVED: ClassVar[tuple[str, ...]] = ("by_type", "by_kind", "file_peak_share")

    model: str
    runtime: str
    threads: int | None
    runs: int
    total_ms: float
    wall_ms: float
    ops: tuple[OpTime, ...] = ()
    peaks: dict = field(default_factory=dict)
    source: str = ""
    supported: bool = True
    reason: str = ""
    settings: dict = field(default_factory=dict)

    def by_type(self) -> dict[str, float]:
        """``{op type: ms}``, largest first."""
        return _sum_by(self.ops, lambda o: o.type)

    def by_kind(self) -> dict[str, float]:
        """``{graph kind (conv, depthwise, dense, elementwise, ...): ms}``, largest first."""
        return _sum_by(self.ops, lambda o: o.kind or "?")

    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def peak_share(self) -> float | None:
        """The whole file's achieved MAC rate (by the sum of op times) over the peak of its main precision."""
        macs = self.macs()
        prec = "int8" if sum(o.macs for o in self.ops if o.precision == "int8") > macs / 2 else "fp32"
        peak = self.peaks.get(prec)
        return macs / (self.total_ms / 1e3) / 1e9 / peak if peak and macs and self.total_ms else None

    def derived(self) -> dict[str, Any]:
        return {"by_type": self.by_type(), "by_kind": self.by_kind(), "file_peak_share": self.peak_share()}

    def render(self, top: int = 15) -> str:
        """Text table: the file's total, time by op type, and the ``top`` worst ops."""
        head = f"{Path(self.model).name} on {self.runtime}, {self.threads or 'default'} threads"
        if not self.supported:
            return f"{head}: no per-op profile ({self.reason}); end-to-end mean {self.wall_ms:.2f} ms"
        share = self.peak_share()
        peaks = ", ".join(f"{k} {v:.0f} GMAC/s" for k, v in self.peaks.items() if v)
        lines = [
            f"{head}: ops sum {self.total_ms:.2f} ms of {self.wall_ms:.2f} ms per run ({self.runs} runs, "
            f"{self.source})" + (f"; {100 * share:.0f}% of peak ({peaks})" if share else ""),
            "  by type: " + ", ".join(f"{t} {ms:.2f} ms" for t, ms in list(self.by_type().items())[:8]),
            f"  {'op':44s} {'type':16s} {'layer':20s} {'ms':>6s} {'%':>5s} {'MMAC':>7s} {'GMAC/s':>7s} {'%peak':>6s}",
        ]
        for op in self.ops[:top]:
            rate = f"{op.gmacs:7.1f}" if op.gmacs else f"{'':7s}"
            pk = f"{100 * op.peak_share:5.0f}%" if op.peak_share else f"{'':6s}"
            lines.append(
                f"  {short_name(op.name)[-44:]:44s} {op.type[:16]:16s} {op.layer[:20]:20s} {op.time_ms:6.3f} "
                f"{100 * op.share:4.1f}% {op.macs / 1e6:7.2f} {rate} {pk}"
            )
        return "\n".join(lines)


def _sum_by(ops, key) -> dict[str, float]:
    out: dict[str, float] = {}
    for op in ops:
        out[key(op)] = out.get(key(op), 0.0) + op.time_ms
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def short_name(name: str) -> str:
    """A TFLite op's name lists every tensor fused into it (``[a;b;c]:12``): keep the first and the index."""
    m = re.fullmatch(r"\[([^;\]]*)[^\]]*\](:\d+)", name)
    return m.group(1) + m.group(2) if m else name


@dataclass(frozen=True)
class Op:
    """One op of an exported file as its format's reader sees it (``FormatSpec.op_reader``): type, kind
    (conv, depthwise, dense, pool, ...), multiply-accumulates and bytes of weights and activations."""

    type: str
    kind: str
    macs: int
    weight_bytes: int
    act_bytes: int
