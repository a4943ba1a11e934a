"""``edgetransfer sweep``: the best backbone, input size and precision for a device budget."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import EXIT_TOOLCHAIN
from ..exporter.formats import PRECISIONS
from ..flows.executors import EXECUTORS
from ..flows.sweep import DEFAULT_PRECISIONS, sweep
from ..records import DEFAULT_CALIBRATION_SIZE
from ..training import TrainConfig
from ._common import echo, json_option, table


@click.command("sweep")
@click.option(
    "--data", "data_dir", required=True, type=click.Path(path_type=Path), help="Image folder (class sub-folders)."
)
@click.option("--backbone", "backbones", multiple=True, help="Repeatable (default: those with offline weights).")
@click.option(
    "--image-size", "image_sizes", type=int, multiple=True, help="Repeatable (default: 128..224 + native size)."
)
@click.option(
    "--precision",
    "precisions",
    type=click.Choice(PRECISIONS),
    multiple=True,
    help=f"Repeatable (default: {', '.join(DEFAULT_PRECISIONS)}).",
)
@click.option("--target", "targets", multiple=True, help="Target profile, repeatable (default: host-cpu).")
@click.option("--targets-dir", type=click.Path(path_type=Path), help="Extra folder of target profiles.")
@click.option("--max-latency-ms", type=float, help="p90 budget on every target (overrides the profiles).")
@click.option("--max-size-mb", type=float, help="File size budget (overrides the profiles).")
@click.option("--max-accuracy-drop", type=float, help="Points below the float model (overrides the profiles).")
@click.option("--epochs", type=int, default=10, show_default=True, help="Head epochs per run.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-split", type=float, default=0.2, show_default=True, help="Held-out fraction without val/.")
@click.option(
    "--calibration-size",
    type=int,
    default=DEFAULT_CALIBRATION_SIZE,
    show_default=True,
    help="int8 calibration images.",
)
@click.option("--budget-s", type=float, default=1.0, show_default=True, help="Seconds of timing per file on host.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("sweep-out"), show_default=True)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default="local",
    show_default=True,
    help="Where each backbone x size group runs: this process, a local process pool, or Ray tasks.",
)
@click.option("--jobs", type=click.IntRange(min=1), help="Processes (processes), CPUs of a local Ray cluster (ray).")
@click.option("--ray-address", help="An existing Ray cluster (host:6379 or ray://host:10001); --executor ray.")
@click.option(
    "--teacher",
    metavar="auto|RUN",
    help="Distil every configuration smaller (in MACs) than a teacher from it: auto = the grid's most "
    "accurate group, or a finished run folder. Both fronts are reported (with and without it).",
)
@click.option(
    "--bf16",
    is_flag=True,
    help="Also run each fp32 configuration's fp32 file in bf16 on host targets whose CPU has AVX512-BF16/AMX "
    "(OpenVINO), measured for accuracy and latency: one more configuration, 'fp32 as bf16'.",
)
@json_option
@click.pass_context
def sweep_cmd(ctx, data_dir, backbones, image_sizes, precisions, targets, targets_dir, out, as_json, **opts) -> None:
    """Train, export and validate backbone x size x precision; Pareto front and pick per target.

    \b
    Rerunning the same command resumes: finished configurations under --out are skipped.
    --executor processes|ray runs the groups in parallel; host-target latency is then measured
    in this process after them, one file at a time (a quiet machine, one host per front).
    --teacher auto also distils every group smaller than the grid's most accurate one from it and
    reports both fronts (the plain configurations alone, and with the distilled ones).
    --bf16 adds 'fp32 as bf16' configurations (where this CPU and a runtime can) to the fronts and picks.
    Exit 1 when a target has no configuration within its budgets (the closest is named).
    """
    quiet = ctx.obj is not None and ctx.obj.verbosity < 0
    say = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    cfg = TrainConfig(epochs=opts.pop("epochs"), seed=opts.pop("seed"), val_split=opts.pop("val_split"))
    result = sweep(
        data_dir,
        backbones=backbones or None,
        image_sizes=image_sizes or None,
        precisions=precisions or DEFAULT_PRECISIONS,
        targets=targets or ("host-cpu",),
        out=out,
        train_config=cfg,
        targets_dir=targets_dir,
        progress=say,
        **opts,
    )
    if as_json:
        doc = result.to_json()
        keep = ("backbone", "image_size", "precision", "accuracy", "accuracy_drop", "size_bytes", "macs", "teacher")
        doc["configs"] = [
            {
                **{k: c[k] for k in keep},
                **({"execution": c["execution"]} if c.get("execution") else {}),
                "latency": {
                    t: {"p50_ms": v["p50_ms"], "p90_ms": v["p90_ms"], "provenance": v["provenance"]}
                    for t, v in c["latency"].items()
                },  # fmt: skip
                "artifact": c["artifact"],
            }
            for c in doc["configs"]
        ]
        echo(json.dumps(doc, indent=2))
    else:
        _text(result)
    lost = result.stats.configs - len(result.configs)
    if lost:  # tasks that died twice or raised (--executor processes|ray); the others are reported
        click.echo(f"error: {lost} configuration(s) failed (see notes); rerun the command to retry them", err=True)
        ctx.exit(EXIT_TOOLCHAIN)
    failure = result.failure()
    if failure:
        click.echo(f"error: {failure}", err=True)
        ctx.exit(result.exit_code)


def _text(result) -> None:
    from ..report.sweep import front_lines, rows, timing

    head, body = rows(result)
    echo(table(body, head))
    echo()
    for line in front_lines(result):
        echo(line)
    s = result.stats
    echo()
    echo(
        f"configs {s.configs} ({s.computed} computed, {s.reused} reused from {result.out}); runs {s.trained} trained "
        f"({s.distilled} distilled), "
        f"{s.runs_reused} reused; features {s.feature_hits} reused from the cache, {s.feature_misses} computed; "
        f"conversions and predictions {s.memo_hits} reused, {s.memo_misses} computed; {timing(s)}"
    )
    echo(f"report  {Path(result.out) / 'report.html'}")


def register(cli: click.Group) -> None:
    cli.add_command(sweep_cmd)
