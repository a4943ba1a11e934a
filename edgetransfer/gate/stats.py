"""The statistics the CI decision rests on: a 95% t-interval of repeated figures and the
three-way decision against an upper budget. Pure: shared by measuring (when to stop
repeating) and judging (the verdict), so both use the same rule."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"
# Two-sided 95% Student t quantiles by degrees of freedom (n - 1); any statistics table.
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t-interval of the mean of ``values`` (a latency is never
    negative, so ``low`` is clamped at zero)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, -math.inf, math.inf
    t = _T95[min((k for k in _T95 if k >= n - 1), default=30)]
    half = t * statistics.stdev(values) / math.sqrt(n)
    return mean, max(0.0, mean - half), mean + half


def decide(values: Sequence[float], budget: float) -> str:
    """passed / failed / inconclusive for repeated measurements against an upper budget."""
    return decision(values, budget)[0]


def decision(values: Sequence[float], budget: float) -> tuple[str, tuple[float, float, float]]:
    """(passed / failed / inconclusive, (mean, low, high)): the decision and the interval it rests on."""
    mean, low, high = interval(values)
    return (PASSED if high <= budget else FAILED if low > budget else INCONCLUSIVE), (mean, low, high)
