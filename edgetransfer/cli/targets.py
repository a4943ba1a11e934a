"""``edgetransfer targets list|show`` and ``edgetransfer validate``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from .. import targets as targets_lib
from ..errors import ConfigError
from ._common import echo, emit, json_option, table

targets_dir_option = click.option(
    "--targets-dir", type=click.Path(path_type=Path), help="Extra folder of target profiles (searched first)."
)


@click.group("targets")
def targets_group() -> None:
    """List and show target runtime profiles (targets/*.yaml)."""


@targets_group.command("list")
@targets_dir_option
@json_option
def list_cmd(targets_dir, as_json) -> None:
    """Every profile on the search path: runtime, formats, precisions, measured or estimated."""
    profs, errors = targets_lib.scan(targets_dir)
    if errors:  # list is where a broken profile must be visible: name each one, exit 2
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(
            f"{len(errors)} target profiles failed to load:\n  "
            + "\n  ".join(e.render().replace("\n", " ") for e in errors),
            fix="fix or remove those files",
        )
    if not profs:
        where = ", ".join(str(d) for d, _ in targets_lib.search_path(targets_dir))
        raise ConfigError(
            f"no target profiles found (searched {where})",
            fix="reinstall edgetransfer (the shipped profiles are missing), or pass --targets-dir DIR",
        )
    latency_word = {"estimate": "estimated", "runner": "on-device", "host": "measured"}
    rows = [
        {
            "name": p.name,
            "runtime": p.runtime,
            "provider": p.provider,
            "formats": list(p.formats),
            "precisions": list(p.precisions),
            "latency": latency_word.get(p.measure, p.measure),
            "description": p.description,
            "path": p.path,
            "origin": p.origin,
        }
        for p in profs.values()
    ]
    emit(
        as_json,
        rows,
        lambda: echo(
            table(
                [
                    [
                        r["name"],
                        r["runtime"],
                        "/".join(r["formats"]),
                        "/".join(r["precisions"]),
                        r["latency"],
                        r["origin"],
                    ]
                    for r in rows
                ],
                ["target", "runtime", "formats", "precisions", "latency", "from"],
            )
        ),
    )


@targets_group.command("show")
@click.argument("name")
@targets_dir_option
@json_option
def show_cmd(name, targets_dir, as_json) -> None:
    """One profile in full, with the sources of its constants."""
    p = targets_lib.get(name, targets_dir)
    doc = dataclasses.asdict(p)

    def text() -> None:
        for k, v in doc.items():
            if v in (None, (), {}, []):
                continue
            if isinstance(v, dict):
                echo(f"{k:12s} {_plain(v) or '-'}")
            elif isinstance(v, (tuple, list)) and k == "sources":
                echo(f"{k:12s} " + f"\n{'':12s} ".join(str(x) for x in v))
            else:
                echo(f"{k:12s} {_plain(v)}")

    emit(as_json, doc, text)


def _plain(v) -> str:
    """A value as people read it: lists joined with ``/``, mappings as ``key value`` pairs with the
    unset (None) ones left out; no Python tuples, braces or ``None`` (issue #26)."""
    if isinstance(v, dict):
        return ", ".join(
            f"{k} ({_plain(x)})" if isinstance(x, dict) else f"{k} {_plain(x)}"
            for k, x in v.items()
            if x is not None and x not in ((), {}, [])
        )
    if isinstance(v, (tuple, list)):
        return "/".join(_plain(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def register(cli: click.Group) -> None:
    cli.add_command(targets_group)
