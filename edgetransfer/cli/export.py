"""``edgetransfer export``: quantize and export a trained run."""

from __future__ import annotations

from pathlib import Path

import click

from .. import progress
from ..errors import ConfigError, UnsupportedError
from ..exporter import formats as formats_lib
from ..exporter.artifacts import export as _export
from ..exporter.quantization import CALIBRATION_METHODS, IO_DTYPES, PRECISIONS, QuantRecipe
from ..exporter.quantization.attempts import AccuracyBudgetError, attempts_table
from ..exporter.quantization.doctor import check_budget
from ..exporter.quantization.qat import DEFAULT_EPOCHS as DEFAULT_QAT_EPOCHS
from ..exporter.quantization.qat import check_epochs
from ..records import DEFAULT_CALIBRATION_SIZE
from ._common import echo, emit, json_option, table


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice([*formats_lib.names(), "all"]),
    default=["tflite"],
    show_default=True,
    help="tflite, onnx, tflm (int8 .tflite as C source for microcontrollers) or all; repeatable.",
)
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(PRECISIONS),
    default=["fp32"],
    show_default=True,
    help="Repeat for several.",
)
@click.option(
    "--calibration",
    default="auto",
    show_default=True,
    help="auto (class-balanced sample of the run's training split) or a folder of images.",
)
@click.option("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE, show_default=True)
@click.option(
    "--calibration-method",
    type=click.Choice(CALIBRATION_METHODS),
    default="minmax",
    show_default=True,
    help="ONNX int8.",
)
@click.option(
    "--io",
    "io_dtype",
    type=click.Choice(IO_DTYPES),
    default=None,
    help="TFLite int8 input/output type [default: uint8].",
)
@click.option("--per-tensor", is_flag=True, help="ONNX int8: per-tensor weights (default per-channel).")
@click.option(
    "--layout", type=click.Choice(["nhwc", "nchw"]), default="nhwc", show_default=True, help="ONNX input layout."
)
@click.option("--dynamic-batch", is_flag=True, help="Keep a dynamic batch dimension (default: batch 1, static).")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder [default: RUN_DIR/export].")
@click.option(
    "--max-accuracy-drop",
    "max_accuracy_drop",
    default=None,
    metavar="POINTS",
    help="int8: search calibration and mixed-precision recipes until the file loses at most POINTS of "
    "accuracy against the float model on the held-out data; exit 1 (best attempt written) if none does.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out data for --max-accuracy-drop [default: the run's validation split].",
)
@click.option(
    "--recipe",
    "recipe_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Replay a <file>.recipe.json written by --max-accuracy-drop (its format and precision).",
)
@click.option(
    "--target",
    "target_names",
    multiple=True,
    metavar="NAME",
    help="With --max-accuracy-drop: the targets the file is for; remedies their runtimes cannot run "
    "(16-bit activations where a target lists no int16x8) are not offered. Repeatable.",
)
@click.option(
    "--qat",
    is_flag=True,
    help="int8: quantization-aware training first (a few epochs of fine-tuning with the int8 files' fake "
    "quantization on the run's training split); every format's int8 file is written from that one model.",
)
@click.option(
    "--qat-epochs",
    type=int,
    default=None,
    metavar="N",
    help="Epochs of --qat [default: 3].",
)
@json_option
def export_cmd(
    run_dir,
    formats,
    precisions,
    calibration,
    calibration_size,
    calibration_method,
    io_dtype,
    per_tensor,
    layout,
    dynamic_batch,
    out,
    max_accuracy_drop,
    data_dir,
    recipe_file,
    target_names,
    qat,
    qat_epochs,
    as_json,
) -> None:
    """Export RUN_DIR to TFLite / ONNX at each --precision, with labels and normalisation inside."""
    if max_accuracy_drop is not None:
        max_accuracy_drop = check_budget(max_accuracy_drop)  # a ConfigError (exit 2) before any work
    if io_dtype and "int8" not in precisions:
        QuantRecipe(precisions[0], io_dtype)  # raises the clear error for --io without int8
    from .. import targets as targets_lib

    profiles = [targets_lib.get(n) for n in target_names]  # an unknown name is a ConfigError before any work
    if qat_epochs is not None and not qat:
        raise ConfigError("--qat-epochs is the length of --qat", fix="add --qat")
    epochs = check_epochs(qat_epochs if qat_epochs is not None else DEFAULT_QAT_EPOCHS) if qat else 0
    if qat and "int8" not in precisions:
        raise UnsupportedError("--qat trains for the int8 files", fix="add --precision int8")
    recipes = [
        QuantRecipe.named(
            p,
            io=io_dtype,
            per_channel=not per_tensor,
            method=calibration_method,
            calibration_size=calibration_size,
            qat_epochs=epochs,
        )
        for p in dict.fromkeys(precisions)
    ]
    fmts = [f for f in formats_lib.names() if f in formats or "all" in formats]
    what = f"exporting {', '.join(fmts)} at {', '.join(r.precision for r in recipes)}"
    try:
        with progress.stage(what + (" (int8 recipe search)" if max_accuracy_drop is not None else ""), info=True):
            arts = _export(
                run_dir,
                formats,
                recipes,
                out=out,
                calibration=calibration,
                layout=layout,
                explicit_io=io_dtype is not None,
                dynamic_batch=dynamic_batch,
                max_accuracy_drop=max_accuracy_drop,
                data_dir=data_dir,
                recipe_file=recipe_file,
                targets=profiles,
            )
    except AccuracyBudgetError as exc:
        if not as_json:  # the search is the answer too: show it before the error
            _print_attempts(exc.artifacts)
        raise
    if not as_json:
        _print_attempts(arts)
    rows = [a.to_json() | ({"attempts": list(a.manifest.attempts)} if a.manifest.attempts else {}) for a in arts]
    bundles = (
        sorted(str(p.parent) for p in Path(rows[0]["path"]).parent.glob("tflm/*/model_data.cc"))
        if "tflm" in formats
        else []
    )
    emit(
        as_json,
        rows,
        lambda: echo(
            table(
                [
                    [
                        Path(r["path"]).name,
                        r["format"],
                        r["precision"],
                        r["io"]["dtype"],
                        f"{r['size_bytes'] / 1e6:.2f} MB",
                        r["sha256"][:12],
                    ]
                    for r in rows
                ],
                ["file", "format", "precision", "input", "size", "sha256"],
            )
            + f"\n\nwritten to {Path(rows[0]['path']).parent}"
            + "".join(f"\nTFLM bundle (model_data.cc/.h, tflm_manifest.json): {b}" for b in bundles)
        ),
    )


def _print_attempts(arts) -> None:
    for a in arts:
        if a.manifest.attempts:
            rows, header = attempts_table(a.manifest.attempts)
            echo(f"{a.path.name}: int8 recipe search (--max-accuracy-drop)\n{table(rows, header)}\n")


def register(cli: click.Group) -> None:
    cli.add_command(export_cmd)
