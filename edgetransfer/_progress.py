"""Progress bars on stderr, only when stderr is a terminal (never in CI logs or --json)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

T = TypeVar("T")


def progress(items: Iterable[T], total: int, label: str) -> Iterator[T]:
    """Yield ``items``, drawing a bar on stderr when it is a TTY."""
    if not sys.stderr.isatty() or total < 20:
        yield from items
        return
    with click.progressbar(items, length=total, label=label, file=sys.stderr) as bar:
        yield from bar
