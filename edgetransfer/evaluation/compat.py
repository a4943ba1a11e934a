"""Delegate compatibility: which ops an accelerator takes, which fall back, in how many pieces.

Rules come from the target profile (its ``delegate`` section), applied to the ops of the
exported file, so a partly delegated model is flagged before anyone deploys it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Compatibility:
    delegate: str
    ops_total: int
    ops_delegated: int
    macs_share: float
    partitions: int
    fallback_ops: tuple[str, ...]
    full: bool
    note: str = ""

    @property
    def ops_share(self) -> float:
        return self.ops_delegated / self.ops_total if self.ops_total else 1.0

    def to_json(self) -> dict:
        return {**asdict(self), "fallback_ops": sorted(set(self.fallback_ops)), "ops_share": round(self.ops_share, 4)}


def check(ops, delegate, precision: str) -> Compatibility:
    """Apply ``delegate``'s op list and partitioning rule to ``ops`` (graph order).

    Args:
        ops: :class:`edgetransfer.exporter.formats.graphops.Op` list of the exported file.
        delegate: the target's :class:`edgetransfer.targets.Delegate`.
        precision: the artifact's precision; a precision the delegate refuses delegates nothing.
    """
    # Weight dequantization is folded at load time: it neither runs nor splits the graph.
    ops = [o for o in ops if not (o.type in ("DEQUANTIZE", "DequantizeLinear") and o.weight_bytes)]
    supported = set(delegate.supported_ops)
    ok = [o.type in supported for o in ops]
    note = ""
    if delegate.precisions and precision not in delegate.precisions:
        ok = [False] * len(ops)
        note = f"{delegate.name} takes {'/'.join(delegate.precisions)} models; this one is {precision}"
    if delegate.partitioning == "first_segment" and False in ok:
        first_bad = ok.index(False)
        ok = [i < first_bad for i in range(len(ok))]
    partitions = sum(1 for i, v in enumerate(ok) if v and (i == 0 or not ok[i - 1]))
    total_macs = sum(o.macs for o in ops) or 1
    fallback = tuple(o.type for o, v in zip(ops, ok) if not v)
    return Compatibility(
        delegate.name,
        len(ops),
        sum(ok),
        round(sum(o.macs for o, v in zip(ops, ok) if v) / total_macs, 4),
        partitions,
        fallback,
        all(ok),
        note,
    )


def for_artifact(path, delegate, precision: str) -> Compatibility:
    """Compatibility of an exported file: the vendor's own tool where one answers (ONNX Runtime's
    mobile usability checker for NNAPI / Core ML, LiteRT's GPU analyzer), else the profile's op
    list. ``source`` in the note says which answered; MACs shares always come from the op list
    (the tools count nodes, not MACs)."""
    from ..errors import MissingDependencyError, ToolchainError, UnsupportedError
    from ..exporter.formats import delegate_check, graphops

    listed = check(graphops.ops_for(path), delegate, precision)
    if delegate.precisions and precision not in delegate.precisions:
        return listed  # refused by precision before any tool is asked
    try:
        r = delegate_check.check_delegate(path, delegate.name)
    except (UnsupportedError, MissingDependencyError, ToolchainError):
        return replace(listed, note=(listed.note + " (answered by the profile's op list)").strip())
    return Compatibility(
        delegate.name,
        r.nodes_total,
        r.nodes_supported,
        listed.macs_share if not r.full else 1.0,
        r.partitions,
        r.unsupported_ops,
        r.full,
        f"answered by {r.tool}" + (f" ({r.verdict})" if r.verdict else ""),
    )
