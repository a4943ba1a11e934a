"""``edgetransfer targets list|show`` and ``edgetransfer validate``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from .. import targets as targets_lib
from ._common import echo, emit, json_option, table

targets_dir_option = click.option("--targets-dir", type=click.Path(path_type=Path),
                                  help="Extra folder of target profiles (searched first).")


@click.group("targets")
def targets_group() -> None:
    """List and show target runtime profiles (targets/*.yaml)."""


@targets_group.command("list")
@targets_dir_option
@json_option
def list_cmd(targets_dir, as_json) -> None:
    """Every profile on the search path: runtime, formats, precisions, measured or estimated."""
    profs = targets_lib.all_profiles(targets_dir)
    rows = [{"name": p.name, "runtime": p.runtime, "provider": p.provider, "formats": list(p.formats),
             "precisions": list(p.precisions), "latency": "measured" if p.measure != "estimate" else "estimated",
             "description": p.description, "path": p.path} for p in profs.values()]
    emit(as_json, rows, lambda: echo(table(
        [[r["name"], r["runtime"], "/".join(r["formats"]), "/".join(r["precisions"]), r["latency"]] for r in rows],
        ["target", "runtime", "formats", "precisions", "latency"])))


@targets_group.command("show")
@click.argument("name")
@targets_dir_option
@json_option
def show_cmd(name, targets_dir, as_json) -> None:
    """One profile in full, with the sources of its constants."""
    p = targets_lib.get(name, targets_dir)
    doc = dataclasses.asdict(p)
    emit(as_json, doc, lambda: [echo(f"{k:12s} {v}") for k, v in doc.items() if v not in (None, (), {})])


def register(cli: click.Group) -> None:
    cli.add_command(targets_group)
