"""``edgetransfer train``: transfer-learn a backbone on an image folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from ..training import WORKFLOWS, TrainConfig, train
from ..training.config import SCHEDULES
from ._common import echo, emit, json_option

log = logging.getLogger("edgetransfer")


@click.command("train")
@click.option(
    "--data", "data_dir", required=True, type=click.Path(path_type=Path), help="Image folder (class sub-folders)."
)
@click.option("--val-data", type=click.Path(path_type=Path), help="Separate validation folder.")
@click.option(
    "--val-split", type=float, default=0.2, show_default=True, help="Held-out fraction when there is no val/."
)
@click.option("--backbone", default="efficientnet_lite0", show_default=True, help="See `edgetransfer backbones list`.")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none, or a .weights.h5 file.")
@click.option("--workflow", type=click.Choice(WORKFLOWS), default="auto", show_default=True)
@click.option("--unfreeze", default="auto", show_default=True, help="fine-tune depth: auto, all, or a layer count.")
@click.option("--cut-at", default="top", show_default=True, help="Backbone cut point (stride8, stride16, top).")
@click.option("--image-size", type=int, help="Square input side (default: the backbone's).")
@click.option("--epochs", type=int, default=10, show_default=True, help="Head epochs.")
@click.option("--fine-tune-epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--learning-rate", type=float, default=1e-3, show_default=True, help="Head LR; fine-tuning peaks at 1/10."
)
@click.option(
    "--augment-views",
    "feature_views",
    type=int,
    default=1,
    show_default=True,
    help="features workflow: cached views per image (1 = clean only).",
)
@click.option("--no-augment", is_flag=True, help="fine-tune workflow: no augmentation.")
@click.option("--dropout", type=float, default=0.2, show_default=True, help="Dropout before the new head.")
@click.option("--label-smoothing", type=float, default=0.1, show_default=True, help="fine-tune workflow.")
@click.option("--weight-decay", type=float, default=0.01, show_default=True, help="fine-tune: AdamW decay (0 = Adam).")
@click.option(
    "--lr-schedule",
    type=click.Choice(SCHEDULES),
    default="cosine",
    show_default=True,
    help="fine-tune phase: cosine decay after a linear warm-up, or constant.",
)
@click.option("--warmup-epochs", type=int, default=1, show_default=True, help="fine-tune phase LR warm-up.")
@click.option(
    "--crop-scale", type=float, default=0.5, show_default=True, help="Smallest random-resized-crop area (1 = off)."
)
@click.option("--mixed-precision", is_flag=True, help="float16 compute, float32 output (GPUs; ignored on CPU).")
@click.option(
    "--worker-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Multi-worker (TF_CONFIG): seconds to wait for every worker to join.",
)
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored"]), default="auto", show_default=True)
@click.option(
    "--teacher",
    type=click.Path(path_type=str),
    help="Distil from this finished run (same classes): the student learns its soft predictions.",
)
@click.option(
    "--distill-temperature", type=float, default=4.0, show_default=True, help="Softmax temperature T (1-20)."
)
@click.option(
    "--distill-alpha", type=float, default=0.9, show_default=True, help="Weight of the teacher's soft loss (0-1)."
)
@click.option(
    "--distill-views", type=int, default=4, show_default=True, help="Views per image the teacher labels (1 = clean)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/latest"), show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--follow-links", is_flag=True, help="Read split/class folders that are symbolic links leaving --data.")
@json_option
@click.pass_context
def train_cmd(ctx, data_dir, val_data, out, resume, as_json, no_augment, follow_links, **options) -> None:
    """Transfer-learn a backbone; writes model.keras, manifest.json and plots to --out."""
    cfg = TrainConfig(**options, augment=not no_augment)
    if ctx.get_parameter_source("val_split") == click.core.ParameterSource.COMMANDLINE:
        given = "--val-data" if val_data else ("its own val/ folder" if (Path(data_dir) / "val").is_dir() else None)
        if given:  # said, not silently dropped (issue #26)
            log.warning("--val-split %g is ignored: the held-out images come from %s", cfg.val_split, given)
    run = train(data_dir, cfg, out=out, val_data=val_data, resume=resume, follow_links=follow_links)
    m = run.manifest
    payload = {
        "run_dir": str(run.run_dir),
        "workflow": m.workflow,
        "reason": m.reason,
        "val_accuracy": m.metrics.val_accuracy,
        "val_loss": m.metrics.val_loss,
        "train_seconds": m.train_seconds,
        "images_per_second": m.images_per_second,
        "backbone": m.backbone,
        "input_size": m.input_size,
        "distill": m.config.get("distill"),
        "classes": list(m.classes),
        "data": {
            "split_source": m.data.split_source,
            "train_images": m.data.train_images,
            "val_images": m.data.val_images,
            "counts": m.data.counts,
        },
    }

    def text() -> None:
        echo(f"data         {m.data.train_images} training / {m.data.val_images} held-out images ({_split_words(m)})")
        for line in _per_class(m.data.counts):
            echo(f"             {line}")
        echo(f"workflow     {m.workflow} ({m.reason})")
        echo(f"val accuracy {m.metrics.val_accuracy:.4f} on {m.metrics.val_images} images")
        if d := m.config.get("distill"):
            t = d["teacher"]
            echo(
                f"distilled    from {t['backbone']} at {t['input_size']} px (val accuracy {t['val_accuracy']:.4f}, "
                f"{t['run']}), T {d['temperature']:g}, alpha {d['alpha']:g}, {d['views']} views, "
                f"soft labels {d['soft_labels']}"
            )
        echo(f"time         {m.train_seconds:.1f} s ({m.images_per_second} images/s, {m.strategy})")
        echo(f"run          {os.path.normpath(run.run_dir)}  (model.keras, manifest.json, curves.png, confusion.png)")

    emit(as_json, payload, text)


def _split_words(m) -> str:
    if m.data.split_source.startswith("val_split="):
        return f"held out {m.config.get('val_split', 0):.0%} of each class, seed {m.seed}"
    return f"split as given in the folder ({m.data.split_source})"


def _per_class(counts: dict) -> list[str]:
    """``class: train N / val M`` lines from the dataset's per-split counts."""
    splits = {k: v for k, v in counts.items() if isinstance(v, dict)}
    if not splits:
        return []
    classes = list(dict.fromkeys(c for v in splits.values() for c in v))
    return [f"{c}: " + " / ".join(f"{s} {splits[s].get(c, 0)}" for s in splits) for c in classes]


def register(cli: click.Group) -> None:
    cli.add_command(train_cmd)
