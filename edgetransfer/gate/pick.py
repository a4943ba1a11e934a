"""The pick: one rule for the best file, used by validate, the report and the sweep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import DEFAULT_PICK_ACCURACY_DROP, Budget
from ..records.measure import Best, Measurement


@dataclass(frozen=True)
class Candidate:
    """What the pick reads of one measured file (a validate record, a sweep point) on one target."""

    key: Any  # the caller's handle: a Measurement, a point's index
    p50_ms: float | None
    p90_ms: float | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    size_bytes: int | None = None
    fits: bool = True  # the target's memory (microcontrollers); unmeasured counts as fitting


def within(c: Candidate, budget: Budget) -> bool:
    """``c`` fits and meets each of ``budget``'s accuracy drop, p90 and size limits that are set; a figure
    not measured (an imported file's drop) does not count against it."""
    return (
        c.fits
        and (budget.accuracy_drop is None or (c.accuracy_drop or 0) <= budget.accuracy_drop)
        and (budget.latency_p90_ms is None or c.p90_ms is None or c.p90_ms <= budget.latency_p90_ms)
        and (budget.size_mb is None or c.size_bytes is None or c.size_bytes / 1e6 <= budget.size_mb)
    )


def fastest(c: Candidate) -> tuple:
    """validate's order: the lowest p50."""
    return (c.p50_ms,)


def most_accurate(c: Candidate) -> tuple:
    """The sweep's order: the highest accuracy, then the lower p50, then the smaller file."""
    return (-(c.accuracy or 0.0), c.p50_ms, c.size_bytes or 0)


def pick(candidates: Sequence[Candidate], budget: Budget, order: Callable[[Candidate], tuple] = fastest):
    """The best timed candidate within ``budget`` by ``order`` (the first of equals), or ``None``: the one
    rule validate, the report and the sweep choose by."""
    ok = [c for c in candidates if c.p50_ms is not None and within(c, budget)]
    return min(ok, key=order, default=None)


def best_per_target(records: Sequence[Measurement], targets: dict) -> dict[str, Best]:
    """Per target: the fastest file (p50) within the target's accuracy budget that fits its memory; a bf16
    execution of an fp32 file (``--bf16``) competes like any other measurement, its accuracy its own."""
    best = {}
    for name, t in targets.items():
        limit = t.budgets.accuracy_drop if t.budgets.accuracy_drop is not None else DEFAULT_PICK_ACCURACY_DROP
        cands = [
            Candidate(m, m.latency.p50 if m.latency else None, accuracy_drop=m.accuracy_drop, fits=m.fits)
            for m in records
            if m.target == name
        ]
        chosen = pick(cands, Budget(accuracy_drop=limit))
        if chosen is not None:
            m = chosen.key
            assert isinstance(m, Measurement) and m.latency is not None
            best[name] = Best(
                m.artifact, m.latency.p50, m.latency.provenance, m.accuracy, m.runtime, m.execution, dict(m.settings)
            )
    return best
