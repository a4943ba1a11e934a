"""The gate: the CI decision, a pure function of measurements and one budget, and the pick of the best file.

- :mod:`.judge`: :func:`judge` takes a :class:`~edgetransfer.records.Measurement` (measured live by
  :func:`edgetransfer.evaluation.measure`, or read from a ``validation.json``) and a
  :class:`~edgetransfer.records.Budget`, and returns a :class:`~edgetransfer.records.Verdict`.
- :mod:`.pick`: the one rule validate, the report and the sweep choose the best file by.
- :mod:`.stats`: the t-interval and three-way decision both rest on (measuring uses it to know when to
  stop repeating, so it sits here, below evaluation).

Nothing here loads a model or imports a runtime: ``check --from-report`` judges a report measured
elsewhere with the same rule as the live check.
"""

from .judge import (
    UNSTABLE_SPREAD,
    accuracy_check,
    budget_for,
    from_report,
    judge,
    latency_check,
    memory_checks,
    peak_memory_check,
    ratio_check,
    validate_samples,
)
from .pick import Candidate, best_per_target, fastest, most_accurate, pick, within

__all__ = [
    "UNSTABLE_SPREAD",
    "Candidate",
    "accuracy_check",
    "best_per_target",
    "budget_for",
    "fastest",
    "from_report",
    "judge",
    "latency_check",
    "memory_checks",
    "most_accurate",
    "peak_memory_check",
    "pick",
    "ratio_check",
    "validate_samples",
    "within",
]
