"""``edgetransfer validate``: accuracy and latency of exported files on target profiles."""
from __future__ import annotations

from pathlib import Path

import click

from .. import report as report_lib
from ..validate import validate
from ._common import echo, emit, json_option, table
from .targets import targets_dir_option


@click.command("validate")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path), help="Held-out image folder.")
@click.option("--target", "target_names", multiple=True, default=["host-cpu"], show_default=True,
              help="Target profile name or YAML path; repeat for several.")
@targets_dir_option
@click.option("--budget-s", type=float, default=2.0, show_default=True, help="Seconds of timed runs per measurement.")
@click.option("--skip-incompatible", is_flag=True, help="Leave out artifact x target pairs the target cannot run.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write FILE.html, .md or .json too.")
@json_option
def validate_cmd(artifacts, data_dir, target_names, targets_dir, budget_s, skip_incompatible, report_path, as_json):
    """Accuracy vs the float model and latency (measured or estimated) of ARTIFACTS on each --target."""
    rep = validate(artifacts, data_dir, target_names, targets_dir=targets_dir, budget_s=budget_s,
                                skip_incompatible=skip_incompatible)
    if report_path:
        report_lib.write(rep, report_path)

    def text() -> None:
        echo(f"float model: accuracy {rep.reference['accuracy']:.4f}, Keras p50 {rep.reference['latency_ms']['p50']:.2f} ms (measured)")
        echo(table(report_lib._rows(rep), report_lib.HEADER))
        for t, b in rep.best.items():
            echo(f"best on {t}: {Path(b['artifact']).name} ({b['p50_ms']:.2f} ms, {b['provenance']})")
        for f in rep.findings:
            echo(f"finding: {f}")
        if report_path:
            echo(f"report: {report_path}")

    emit(as_json, [r.to_json() for r in rep.records], text)


def register(cli: click.Group) -> None:
    cli.add_command(validate_cmd)
