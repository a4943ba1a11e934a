"""``edgetransfer import``: a model trained elsewhere (or a .tflite / .onnx from another tool) as a run folder."""

from __future__ import annotations

from pathlib import Path

import click

from ..images import RESIZE_POLICIES
from ._common import echo, emit, json_option


@click.command("import")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Image folder with the model's classes as sub-folders; its val/ (or test/, else all of it) is held out.",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Labels in output order, one a line [default: the file's metadata, else the class folders of --data].",
)
@click.option(
    "--preprocess",
    help="What your code did to RGB [0, 255] pixels: tf, torch, caffe, efficientnet, none, or "
    "'scale=A,offset=B' / 'mean=R,G,B,std=R,G,B' (add order=bgr). Required for a Keras model.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [default: runs/<model file name>].")
@click.option("--image-size", type=int, help="Input side, for a Keras model that takes any size.")
@click.option(
    "--resize-policy",
    type=click.Choice(RESIZE_POLICIES),
    default="stretch",
    show_default=True,
    help="How images are fitted to the input (stretch: keras.utils.image_dataset_from_directory's default).",
)
@json_option
def import_cmd(model, data_dir, labels, preprocess, out, image_size, resize_policy, as_json):
    """Import MODEL (.keras, .h5, .tflite or .onnx) as a run folder for export, validate and check.

    \b
    A Keras model gets its preprocessing folded in (RGB [0, 255] in) and a softmax if it outputs
    logits; a .tflite / .onnx becomes the run's one exported file (no Keras float reference).
    """
    from ..flows.importer import describe, import_model

    result = import_model(
        model,
        data_dir,
        labels=labels,
        preprocess=preprocess,
        out=out,
        image_size=image_size,
        resize_policy=resize_policy,
    )

    def text() -> None:
        d = describe(result)
        ho = d["held_out"]
        echo(
            f"imported {Path(model).name} -> {d['run']} "
            f"({d['input_size']}x{d['input_size']}, {len(d['classes'])} classes)"
        )
        for note in d["notes"]:
            echo(f"  {note}")
        echo(f"held-out accuracy: {ho['accuracy']:.4f} on {ho['images']} images ({ho['split']})")
        if d["float_model"]:
            echo(
                f"next: edgetransfer export {d['run']} --format tflite --format onnx --precision fp32 --precision int8"
            )
        else:
            echo(f"next: edgetransfer validate {d['run']}/export/{Path(model).name} --data {data_dir}")

    emit(as_json, describe(result), text)


def register(cli: click.Group) -> None:
    cli.add_command(import_cmd)
