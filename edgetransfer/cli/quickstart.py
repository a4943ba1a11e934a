"""``edgetransfer quickstart`` and ``edgetransfer run PIPELINE.yaml``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import report as report_lib
from ..flows import pipeline as flow_lib
from ..flows import quickstart as qs
from ._common import echo, emit, json_option, table


def _log(as_json: bool):
    return (lambda msg: print(msg, file=sys.stderr)) if as_json else echo


def _summary(result: flow_lib.FlowResult) -> None:
    rep = result.report
    rows = [
        [
            Path(r.artifact).name,
            r.label,  # "fp32 as bf16" where validate: {bf16: true} ran the fp32 file in bf16
            r.target,
            f"{r.accuracy:.4f}",
            f"{r.accuracy_drop:.2f}" if r.accuracy_drop is not None else "-",
            f"{r.latency.p50:.2f}" if r.latency else "-",
            r.provenance or "-",
            f"{r.size_bytes / 1e6:.2f}",
        ]
        for r in rep.records
    ]
    ref_acc = rep.reference.accuracy if rep.reference else float("nan")
    echo(f"float     accuracy {ref_acc:.4f} on {rep.held_out.images} held-out images")
    echo(table(rows, ["artifact", "precision", "target", "accuracy", "drop", "p50 ms", "latency is", "MB"]))
    echo("drop: points of accuracy each file loses against the float model (negative: it gained)")
    for t, b in report_lib.best(rep).items():
        if b is None:
            echo(f"best on {t}: none (no file fits its memory)")
            continue
        echo(f"best on {t}: {Path(b.artifact).name}{report_lib.best_how(b)} ({b.p50_ms:.2f} ms, {b.provenance})")
    if result.verdict:
        for c in result.verdict.checks:
            echo(f"{c.status.upper():8s} {c.message}")
        echo(f"check     {result.verdict.status.upper()} (exit {result.verdict.exit_code})")
    echo(f"report    {result.report_path}")


@click.command("quickstart")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("quickstart-out"),
    show_default=True,
    help="Where the dataset, run, exports and report go.",
)
@json_option
@click.pass_context
def quickstart_cmd(ctx, out_dir: Path, as_json: bool) -> None:
    """The whole path on an embedded default: scikit-learn's digits, EfficientNet-Lite0 (offline weights),
    TFLite + ONNX in fp32/fp16/int8, host-cpu and three estimated mobile targets, budgets, HTML report."""
    res = qs.run(out_dir, log=_log(as_json))

    def text() -> None:
        _summary(res.result)
        echo(f"total     {res.seconds:.0f} s")

    emit(as_json, res.to_json(), text)
    ctx.exit(res.result.exit_code)


@click.command("run")
@click.argument("pipeline", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def run_cmd(ctx, pipeline: Path, as_json: bool) -> None:
    """Run PIPELINE.yaml: data, train, export, validate, check; unchanged stages are skipped."""
    result = flow_lib.run(flow_lib.Flow.from_yaml(pipeline), log=_log(as_json))
    emit(
        as_json,
        {
            "skipped": list(result.skipped),
            "report": str(result.report_path),
            "records": [r.to_json() for r in result.report.records],
            "verdict": result.verdict.to_json() if result.verdict else None,
        },
        lambda: _summary(result),
    )
    ctx.exit(result.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(quickstart_cmd)
    cli.add_command(run_cmd)
