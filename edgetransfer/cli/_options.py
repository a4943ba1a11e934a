"""Command-line options made from record fields.

A budget or measurement option's flag, default and help live on the record's field
(``metadata["cli"]``: :class:`~edgetransfer.records.Budget`,
:class:`~edgetransfer.evaluation.MeasureRequest`), so the command line and the library cannot
drift apart; ``unit`` picks the checked click type (``count``: 1 or more, ``seconds``: above 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from ._guards import COUNT, SECONDS

F = TypeVar("F", bound=Callable[..., Any])
_TYPES: dict[str, Any] = {"count": COUNT, "seconds": SECONDS, "number": float}


def _cli_fields(record: type, names: tuple[str, ...]) -> list[dataclasses.Field]:
    by_name = {f.name: f for f in dataclasses.fields(record)}
    return [by_name[n] for n in names or tuple(n for n, f in by_name.items() if "cli" in f.metadata)]


def options(record: type, *names: str) -> Callable[[F], F]:
    """click options for the fields ``names`` of ``record`` (every field with CLI metadata when none
    is named), in field order; each is passed to the command under the field's own name."""

    def decorate(f: F) -> F:
        for fld in reversed(_cli_fields(record, names)):
            meta = fld.metadata["cli"]
            default = None if fld.default is dataclasses.MISSING else fld.default
            if meta.get("unit") == "flag":  # a requirement: given (True) or not (None, the profile's word stands)
                f = click.option(meta["flag"], fld.name, is_flag=True, default=None, help=meta.get("help"))(f)
                continue
            f = click.option(
                meta["flag"],
                fld.name,
                type=_TYPES[meta.get("unit", "number")],
                default=default,
                show_default=default is not None,
                help=meta.get("help"),
            )(f)
        return f

    return decorate


def take(record: type, values: dict[str, Any], *names: str) -> dict[str, Any]:
    """Pop the option values of ``record``'s CLI fields ``names`` (all when none) out of ``values``."""
    return {f.name: values.pop(f.name) for f in _cli_fields(record, names)}


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options given (not ``None``)."""
    return {k: v for k, v in values.items() if v is not None}
