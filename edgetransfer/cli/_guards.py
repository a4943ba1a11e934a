"""click parameter types that refuse values no command can use (exit 2, naming the option).

``--budget-s nan`` or ``--repeats 0`` used to be accepted and fail later, or silently measure
nothing. Use ``type=SECONDS`` / ``type=COUNT`` on such options.
"""

from __future__ import annotations

import math

import click


class _Seconds(click.ParamType):
    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} is not a positive, finite number of seconds", param, ctx)
        return seconds


SECONDS = _Seconds()
COUNT = click.IntRange(min=1)  # repeats, runs, threads: at least one
THREADS = click.IntRange(min=1, max=1024)
