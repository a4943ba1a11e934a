"""``edgetransfer backbones ...``: the registry, and a check that weights + preprocessing are right."""

from __future__ import annotations

from pathlib import Path

import click

from .. import backbones as bb
from .. import progress
from ._common import echo, emit, json_option, table


@click.group("backbones")
def backbones_group() -> None:
    """List, inspect and try the pretrained backbones."""


def _row(name: str) -> dict:
    spec, prof = bb.get(name), bb.profile(name)
    return {
        "name": name,
        "family": spec.family,
        "input_size": spec.input_size,
        "params": prof.params,
        "macs": prof.macs,
        "feature_dim": prof.feature_dim,
        "weights": spec.weights_status,
    }


@backbones_group.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """Every registered backbone: input size, params, MACs (counted on the graph), weights."""
    names = bb.names()
    rows = [_row(n) for n in progress.iterate(names, "backbones profiled")]
    emit(
        as_json,
        rows,
        lambda: echo(
            table(
                [
                    [r["name"], r["input_size"], f"{r['params'] / 1e6:.2f}M", f"{r['macs'] / 1e6:.0f}M", r["weights"]]
                    for r in rows
                ],
                ["name", "input", "params", "MACs", "weights"],
            )
        ),
    )


@backbones_group.command("show")
@click.argument("name")
@json_option
def show_cmd(name: str, as_json: bool) -> None:
    """Everything the spec of NAME carries: sizes, preprocessing, cut points, caveats."""
    spec, prof = bb.get(name), bb.profile(name)
    doc = {
        **_row(name),
        "allowed_sizes": list(spec.allowed_sizes),
        "preprocess": spec.preprocess.to_json(),
        "cut_points": list(prof.cut_points),
        "published_macs": spec.published_macs,
        "macs_source": spec.macs_source,
        "caveats": list(spec.caveats),
    }

    def text() -> None:
        for key in (
            "name",
            "family",
            "input_size",
            "allowed_sizes",
            "params",
            "macs",
            "published_macs",
            "macs_source",
            "feature_dim",
            "weights",
        ):
            echo(f"{key:15s} {doc[key]}")
        echo(f"{'preprocess':15s} {spec.preprocess.note} (inside the model; feed RGB in [0, 255])")
        for c in prof.cut_points:
            echo(f"{'cut point':15s} {c['name']:9s} {c['layer']} ({c['channels']} channels)")
        for caveat in spec.caveats:
            echo(f"{'caveat':15s} {caveat}")

    emit(as_json, doc, text)


@backbones_group.command("predict")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", "top_k", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none, or a .weights.h5 file.")
@json_option
def predict_cmd(name: str, images: tuple[Path, ...], top_k: int, weights: str, as_json: bool) -> None:
    """ImageNet top-K for IMAGES with NAME's own 1000-class head (checks weights and preprocessing)."""
    from ..backbones.api import predict

    results = predict(name, list(images), top=top_k, weights=weights)

    def text() -> None:
        for r in results:
            echo(r["image"])
            for t in r["top"]:
                echo(f"  {t['score']:7.4f}  {t['index']:4d}  {t['label']}")

    emit(as_json, results, text)


def register(cli: click.Group) -> None:
    cli.add_command(backbones_group)
