"""``edgetransfer quickstart``: the whole path on a real dataset that installs from PyPI."""
from __future__ import annotations

from pathlib import Path

import click

from .. import data as data_lib
from .. import samples
from ._common import echo, emit, json_option
from .data import _render


@click.command("quickstart")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("quickstart-out"), show_default=True,
              help="Where the dataset, run and report go.")
@json_option
def quickstart_cmd(out_dir: Path, as_json: bool) -> None:
    """Run the main job on an embedded default: scikit-learn's digits as an image folder.

    Today it writes the dataset and inspects it; training, export, validation and the
    budget check join as their issues land.
    """
    folder = samples.write_digits(out_dir / "digits")
    ds = data_lib.load(folder, val_split=0.2, seed=0)
    payload = {"dataset": str(folder), "report": ds.report.to_json(),
               "splits": {s: len(ds.split(s)) for s in ds.splits}}

    def text() -> None:
        _render(ds.report)
        echo(f"\nsplit (seeded, stratified): {payload['splits']}")
        echo(f"dataset written to {folder}")

    emit(as_json, payload, text)


def register(cli: click.Group) -> None:
    cli.add_command(quickstart_cmd)
