"""Pure rules of the sweep: the Pareto front, the pick within a budget, how far a point misses it.

Functions of records only (:class:`~edgetransfer.records.SweepPoint`,
:class:`~edgetransfer.records.Budget`): no TensorFlow, no runtime, nothing measured here.
A sweep judges three budgets: p90 latency, file size (MB) and accuracy drop (points below the
configuration's own float model); the others a :class:`Budget` can hold are not the sweep's.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import gate
from ..records import Budget, SweepPoint, SweepResult
from ..records.flows import describe_limits as describe

__all__ = ["describe", "excess", "failure", "pareto_front", "pick", "students", "teacher_group"]


def excess(point: SweepPoint, target: str, budget: Budget) -> float:
    """How far ``point`` is beyond ``budget`` on ``target``: 0 within, else the summed relative overshoot.

    An accuracy overshoot is relative to the budget, or to 1 point when the budget is below 1
    (a 0-point budget would otherwise divide by zero).
    """
    lat = point.latency[target]
    over = 0.0
    if budget.latency_p90_ms is not None:
        over += max(0.0, lat.p90_ms / budget.latency_p90_ms - 1)
    if budget.size_mb is not None:
        over += max(0.0, point.size_bytes / 1e6 / budget.size_mb - 1)
    if budget.accuracy_drop is not None:
        over += max(0.0, (point.accuracy_drop - budget.accuracy_drop) / max(budget.accuracy_drop, 1.0))
    return over


def pareto_front(points: Sequence[SweepPoint], target: str) -> tuple[int, ...]:
    """Indices of the points not dominated on ``target`` (higher accuracy, lower p50), fastest first.

    A point is dominated when another is at least as accurate and at least as fast, and
    strictly better in one of the two. Points without a latency on ``target`` are left out.
    """
    on = [i for i, p in enumerate(points) if target in p.latency]

    def dominated(i: int) -> bool:
        a, la = points[i].accuracy, points[i].latency[target].p50_ms
        return any(
            points[j].accuracy >= a
            and points[j].latency[target].p50_ms <= la
            and (points[j].accuracy > a or points[j].latency[target].p50_ms < la)
            for j in on
        )

    return tuple(sorted((i for i in on if not dominated(i)), key=lambda i: points[i].latency[target].p50_ms))


def pick(points: Sequence[SweepPoint], target: str, budget: Budget) -> tuple[int | None, int | None]:
    """``(best, closest)`` on ``target``: the most accurate point within ``budget`` (ties: faster,
    then smaller; :func:`edgetransfer.gate.pick`, the rule validate picks by too), and the point
    nearest to meeting it (for the message when none does)."""
    on = [i for i, p in enumerate(points) if target in p.latency]
    chosen = gate.pick([_candidate(points[i], i, target) for i in on], budget, gate.most_accurate)

    def nearness(i: int) -> tuple:
        return (excess(points[i], target, budget), *gate.most_accurate(_candidate(points[i], i, target)))

    closest = min(on, key=nearness, default=None)
    return (chosen.key if chosen is not None else None), closest


def _candidate(p: SweepPoint, i: int, target: str) -> gate.Candidate:
    lat = p.latency[target]
    return gate.Candidate(i, lat.p50_ms, lat.p90_ms, p.accuracy, p.accuracy_drop, p.size_bytes)


def failure(result: SweepResult) -> str | None:
    """Why the sweep failed its budgets (naming the closest configuration), or ``None``."""
    return result.failure()


def teacher_group(points: Sequence[SweepPoint]) -> tuple[str, int] | None:
    """The backbone x size group whose float model scored best on the held-out split (ties: more
    MACs, the bigger model), among the plain configurations; ``None`` when there is none.

    The float accuracy is the group's own (every precision of a group shares its float model),
    so the teacher is chosen on what was measured, not guessed from the backbone's size."""
    plain = [p for p in points if not p.distilled]
    if not plain:
        return None
    best = max(plain, key=lambda p: (p.float_accuracy, p.macs))
    return best.backbone, best.image_size


def students(points: Sequence[SweepPoint], teacher_macs: int) -> set[tuple[str, int]]:
    """The plain groups smaller than the teacher (fewer MACs): those distillation can move up."""
    return {(p.backbone, p.image_size) for p in points if not p.distilled and p.macs < teacher_macs}
