"""``edgetransfer data ...``: look at a dataset before training on it."""

from __future__ import annotations

from pathlib import Path

import click

from .. import data as data_lib
from ._common import echo, emit, json_option, table


@click.group("data")
def data_group() -> None:
    """Check image-folder datasets (one sub-folder per class)."""


@data_group.command("inspect")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--val-split", type=float, default=None, help="Fraction per class held out when DIR has no val/ folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of that split.")
@click.option(
    "--follow-links", is_flag=True, help="Read split/class folders that are symbolic links leaving DIRECTORY."
)
@json_option
def inspect_cmd(directory: Path, val_split: float | None, seed: int, follow_links: bool, as_json: bool) -> None:
    """Classes, counts, formats, sizes, undecodable files, duplicates and imbalance of DIRECTORY."""
    ds = data_lib.load(directory, val_split=val_split, seed=seed, follow_links=follow_links)
    doc = {**ds.report.to_json(), "split_source": ds.split_source}
    emit(as_json, doc, lambda: _render(ds.report, ds.split_source.startswith("val_split=")))


def _render(r: data_lib.DataReport, split_words: bool = False) -> None:
    nested = isinstance(next(iter(r.counts.values())), dict)
    splits = list(r.counts) if nested else ["all"]
    rows = [[c, *[(r.counts[s][c] if nested else r.counts[c]) for s in splits]] for c in r.classes]
    split_note = ""
    if nested and "val" in splits and r.counts.get("val") is not None and "all" not in splits:
        split_note = f" (train/val: {'held out by --val-split' if split_words else 'as given in the folder'})"
    echo(f"{r.root}: {len(r.classes)} classes{split_note}\n")
    echo(table(rows, ["class", *splits]))
    echo(
        f"\nformats {r.formats}  modes {r.modes}  sizes {r.size_range['min']}..{r.size_range['max']}"
        f"  imbalance {r.imbalance:.2f}x"
    )
    for title, items in (("bad files (skipped)", r.bad_files), ("suspect files (kept)", r.suspect_files)):
        if items:
            echo(f"\n{title}:")
            for b in items:
                echo(f"  {b.path}: {b.reason}")
    if r.duplicates:
        echo(f"\nexact duplicates ({len(r.duplicates)} groups):")
        for group in r.duplicates:
            echo("  " + "  ==  ".join(group))
    if r.exif_rotated:
        echo(f"\n{len(r.exif_rotated)} images carry an EXIF rotation (applied when loading)")


def register(cli: click.Group) -> None:
    cli.add_command(data_group)
