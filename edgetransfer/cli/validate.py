"""``edgetransfer validate``: accuracy and latency of exported files on target profiles."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .. import progress
from .. import report as report_lib
from ..errors import ConfigError
from ..evaluation import save
from ..evaluation.speed import SpeedOptions, pinned_settings
from ..exporter import formats as formats_lib
from ..flows.validate import validate
from ..io import existing_kind, require_report_path
from ..records.measure import ValidationReport
from ._common import echo, emit, json_option, table
from ._guards import COUNT, SECONDS
from .targets import targets_dir_option

REPORT_NAME = "validation.json"
log = logging.getLogger("edgetransfer")


@click.command("validate")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    help="Held-out image folder [default: the run's own held-out split, from its manifest].",
)
@click.option(
    "--target",
    "target_names",
    multiple=True,
    default=["host-cpu"],
    show_default=True,
    help="Target profile name or YAML path; repeat for several.",
)
@targets_dir_option
@click.option("--budget-s", type=SECONDS, default=2.0, show_default=True, help="Seconds of timing per measurement.")
@click.option("--skip-incompatible", is_flag=True, help="Leave out artifact x target pairs the target cannot run.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Write FILE.html, .md or .json too.")
@click.option(
    "--profile",
    is_flag=True,
    help="Per-op times of each measured file and runtime (host: the runtime's profiler; adb runner: "
    "benchmark_model's op table), joined to the graph's ops and rated against this host's peak.",
)
@click.option(
    "--tune",
    is_flag=True,
    help="Host targets: try each runtime's settings and thread counts interleaved, measure with the winner "
    "and record it (check --settings-from reuses it).",
)
@click.option("--tune-budget-s", type=SECONDS, default=4.0, show_default=True, help="Seconds of tuning per file.")
@click.option(
    "--bf16",
    is_flag=True,
    help="Host targets on a CPU with bf16 units: also run each fp32 file in bf16 (OpenVINO), accuracy and latency.",
)
@click.option(
    "--settings-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Load the runtimes with the settings a validation.json recorded (from --tune) instead of tuning.",
)
@click.option(
    "--device-result",
    "device_results",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A device's benchmark result of one of ARTIFACTS (benchmark_litert_model --result_json, benchmark_model, "
    "onnxruntime_perf_test): that file's latency on every --target is the result's; repeatable.",
)
@click.option("--device-name", help="The device the --device-result files come from.")
@click.option("--top", type=COUNT, default=10, show_default=True, help="Ops shown per profile in the text output.")
@json_option
def validate_cmd(
    artifacts,
    data_dir,
    target_names,
    targets_dir,
    budget_s,
    skip_incompatible,
    report_path,
    profile,
    tune,
    tune_budget_s,
    bf16,
    settings_from,
    device_results,
    device_name,
    top,
    as_json,
):
    """Accuracy vs the float model and latency (measured or estimated) of ARTIFACTS on each --target."""
    if tune and settings_from:
        raise click.UsageError("--tune measures new settings, --settings-from reuses recorded ones: pass one")
    if report_path:  # a report replaces a report (or an empty file), never a run manifest or the user's file
        require_report_path(report_path, "edgetransfer.validation", "report")
    for a in artifacts:  # "not a model" before "no manifest beside it" (issue #26: validate README.md)
        if Path(a).is_file():
            try:
                formats_lib.for_path(a)
            except ConfigError as exc:
                raise ConfigError(f"not a model file ({exc.problem})", path=a, fix=exc.fix) from None
    if device_name is not None and not device_results:
        raise click.UsageError("--device-name names the device of --device-result files: pass them too")
    results = match_results(device_results, artifacts, device_name)
    files = "1 file" if len(artifacts) == 1 else f"{len(artifacts)} files"
    with progress.stage(f"measuring {files} on {', '.join(target_names)} (accuracy, then latency)", info=True):
        rep = validate(
            artifacts,
            data_dir,
            target_names,
            targets_dir=targets_dir,
            budget_s=budget_s,
            skip_incompatible=skip_incompatible,
            report_path=report_path,
            options=SpeedOptions(
                profile=profile,
                tune=tune,
                bf16=bf16,
                tune_budget_s=tune_budget_s,
                pinned=pinned_settings(settings_from) if settings_from else None,
            ),
        )
    if results:
        from .. import targets as targets_lib
        from ..flows.device_results import apply_to_report

        tgts = {name: targets_lib.get(name, targets_dir) for name in rep.targets}
        rep = apply_to_report(rep, results, tgts)
    if report_path:
        report_lib.write(rep, report_path)
    beside = write_beside(rep, artifacts)

    def text() -> None:
        ho = rep.held_out
        echo(f"held-out data: {ho['images']} images of {ho['source']} ({ho['split']})")
        echo(report_lib.float_model_words(rep) + (" (measured)" if rep.reference is not None else ""))
        header, rows = report_lib.table(rep)
        echo(table(rows, header))
        echo("drop: points of accuracy each file loses against the float model (negative: it gained)")
        for t, b in report_lib.best(rep).items():
            if b is None:
                echo(f"best on {t}: none (no file fits its memory)")
                continue
            echo(f"best on {t}: {Path(b.artifact).name}{report_lib.best_how(b)} ({b.p50_ms:.2f} ms, {b.provenance})")
        for name, source in rep.targets.items():
            echo(f"target {name}: profile {source}")
        for line in report_lib.speed_lines(rep, top):
            echo(line)
        for f in rep.findings:
            echo(f"finding: {f}")
        if report_path:
            echo(f"report: {report_path}")
        if beside is not None:
            echo(f"measurements: {beside} (judge them later with `edgetransfer check --from-report {beside}`)")

    emit(as_json, rep.to_json(), text)


def match_results(paths, artifacts, device_name) -> dict:
    """``{file name: [DeviceResult]}``: each ``--device-result`` read and matched to the artifact it
    names (by file name; a result that names none, onnxruntime_perf_test's, needs one artifact)."""
    from ..evaluation.device_results import read, require_same_model

    by_name = {Path(a).name: Path(a) for a in artifacts}
    out: dict = {}
    for p in paths:
        r = read(p, device_name)
        named = r.model.replace("\\", "/").rsplit("/", 1)[-1] if r.model else ""
        if not named and len(by_name) == 1:
            named = next(iter(by_name))
        if named not in by_name:
            raise ConfigError(
                f"the {r.tool} result measured {named or 'an unnamed model'}, none of the files validated "
                f"({', '.join(by_name)})",
                path=p,
                fix="validate the file the result measured, or pass the result of one of these files",
            )
        require_same_model(r, by_name[named], by_name[named].stat().st_size)
        out.setdefault(named, []).append(r)
    return out


def write_beside(rep, artifacts) -> Path | None:
    """``validation.json`` beside the (first) files validated, unless a file of another kind is there:
    a report replaces a report, never a file edgetransfer did not write as one."""
    path = Path(artifacts[0]).parent / REPORT_NAME
    if path.exists() and existing_kind(path) != ValidationReport.KIND:
        log.warning("warning: %s exists and is not a validation report: left as it is", path)
        return None
    save(rep, path)
    return path


def register(cli: click.Group) -> None:
    cli.add_command(validate_cmd)
