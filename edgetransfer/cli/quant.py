"""``edgetransfer quant diagnose``: where an int8 file's error comes from, tensor by tensor."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo, emit, json_option, table


@click.group("quant")
def quant() -> None:
    """Inspect quantized files."""


@quant.command("diagnose")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out images (class folders) [default: the run's validation split].",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The run FILE was exported from (its float model) [default: the one its manifest names].",
)
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True,
              help="Worst tensors whose fixes (op in float, tensor at 16 bits) are measured; 0: none.")  # fmt: skip
@click.option("--images", type=click.IntRange(min=1), default=32, show_default=True,
              help="Held-out images the per-tensor error is summed over.")  # fmt: skip
@click.option("--rows", type=click.IntRange(min=1), default=20, show_default=True, help="Tensors printed.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None, help="Also write an HTML page.")
@json_option
def diagnose_cmd(file, data_dir, run_dir, top, images, rows, html_path, as_json) -> None:
    """Per tensor of an int8 FILE (.tflite / .onnx), the error it adds against its float model on held-out
    images, worst first, with the Keras layer it came from; for the --top worst, the accuracy of the file
    written again with that op in float (and that tensor at 16 bits, ONNX), measured."""
    from ..exporter.quantization.diagnose import diagnose, summary
    from ..exporter.quantization.diagnose import table as diagnosis_table
    from ..report import quant as report

    if html_path is not None:
        report.check_path(html_path)  # before any work
    d = diagnose(file, data_dir=data_dir, run_dir=run_dir, top=top, images=images)
    if html_path is not None:
        report.write_html(d, html_path)

    def text() -> None:
        head, body = diagnosis_table(d, rows)
        echo("\n".join(summary(d)) + "\n")
        echo(table(body, head))
        more = len(d.tensors) - len(body)
        echo((f"\n{more} more tensors: --rows N or --json" if more > 0 else "") + f"\n({d.seconds:.0f} s)")
        if html_path is not None:
            echo(f"HTML: {html_path}")

    emit(as_json, d.to_json(), text)


def register(cli: click.Group) -> None:
    cli.add_command(quant)
