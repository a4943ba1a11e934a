"""``edgetransfer check``: the CI gate. Exit 0 passed, 1 a budget failed, 4 inconclusive."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import ConfigError, EdgeTransferError
from ..evaluation.evaluator import MeasureRequest
from ..io import JUNIT_KIND, require_report_path, require_writable
from ..records import Budget
from ..records.measure import Verdict
from ..report import junit as junit_lib
from ._common import echo, emit, json_option
from ._guards import COUNT
from ._options import options, take
from .targets import targets_dir_option


def _samples(paths: tuple[Path, ...]) -> list | None:
    """Bench documents from every ``--latency-samples`` file (a JSON list, or one document a line);
    :func:`edgetransfer.gate.validate_samples` checks each measured this artifact."""
    if not paths:
        return None
    docs: list = []
    for path in paths:
        try:
            found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"not bench JSON ({exc})",
                path=path,
                fix="pass the output of `python -m edgetransfer.runtime bench MODEL --json`",
            ) from None
        docs += found[0] if len(found) == 1 and isinstance(found[0], list) else found
    return docs


@click.command("check")
@click.argument("artifact", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "target_name", default="host-cpu", show_default=True)
@click.option(
    "--from-report",
    "from_report",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Judge a validation.json measured earlier (no model loaded); ARTIFACT then picks one of its files.",
)
@targets_dir_option
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Held-out images, for the accuracy budget.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@options(Budget)
@click.option(
    "--latency-samples",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Judge p90s measured elsewhere (bench --json outputs of THIS file) instead of measuring; repeatable.",
)
@click.option(
    "--device-result",
    "device_results",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Judge the latency a device measured of THIS file: benchmark_litert_model --result_json, benchmark_model's "
    "log or onnxruntime_perf_test's output; repeatable (several runs give a 95% interval).",
)
@click.option("--device-name", help="The device the --device-result files come from (named in the verdict and JUnit).")
@options(MeasureRequest, "repeats", "max_repeats", "budget_s")
@click.option(
    "--settings-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Load the runtime with the settings a validation.json recorded for this file and target (validate --tune).",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Per-op profiles of the runtimes timed for the latency budget (as validate --profile), after the verdict.",
)
@click.option("--top", type=COUNT, default=10, show_default=True, help="Ops shown per profile with --profile.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML (one test case per budget).")
@click.option("--github-summary", is_flag=True, help="Append a Markdown table to $GITHUB_STEP_SUMMARY.")
@json_option
@click.pass_context
def check_cmd(ctx, artifact, target_name, from_report, junit, **opts) -> None:
    """Enforce latency / accuracy / size budgets of ARTIFACT on --target; exit 0 pass, 1 fail, 4 inconclusive."""
    label = artifact or from_report or "check"
    _refuse(artifact, from_report, junit, opts, label, target_name)
    limits = take(Budget, opts)  # a nonsense budget is exit 2, after the pending JUnit error is written
    if ctx.get_parameter_source("target_name") == click.core.ParameterSource.DEFAULT and not opts["as_json"]:
        click.echo(f"note: no --target given: checking on {target_name} (this machine)", err=True)
    try:
        verdicts = _verdicts(artifact, target_name, from_report, Budget(**limits), opts)
    except EdgeTransferError as exc:
        if junit:
            junit_lib.write_error(junit, label, target_name, exc)
        raise
    why = junit_lib.publish(verdicts, junit, _summary_path(opts["github_summary"]))
    if why:
        click.echo(f"warning: --github-summary: {why}", err=True)
    code = max((v.exit_code for v in verdicts), key=_severity)
    doc = (
        verdicts[0].to_json()
        if len(verdicts) == 1
        else {"verdicts": [v.to_json() for v in verdicts], "exit_code": code}
    )
    emit(opts["as_json"], doc, lambda: _text(verdicts, from_report, opts["top"]))
    ctx.exit(code)


def _refuse(artifact, from_report, junit, opts, label, target_name) -> None:
    """Usage errors, before any work. The JUnit file gets its error case first: whatever fails after
    (a usage error, a doctored report, a crash mid-check), the previous run's pass is gone (issue 37)."""
    if junit:
        require_writable(junit, "JUnit file")
        require_report_path(junit, JUNIT_KIND, "JUnit file")  # JUnit of any tool, or an empty file
        junit_lib.write_pending(junit, label, target_name)
    if artifact is None and from_report is None:
        raise click.UsageError("pass ARTIFACT (measured now) or --from-report validation.json (judged as measured)")
    if from_report is not None and opts["profile"]:
        raise click.UsageError("--from-report loads no model: profile with `validate --profile` and read its report")
    if from_report is not None and opts["settings_from"] is not None:
        raise click.UsageError(
            "--from-report judges figures as measured (with their recorded settings): drop --settings-from"
        )
    if opts["device_results"] and (from_report is not None or opts["latency_samples"]):
        raise click.UsageError("--device-result is a latency measured elsewhere: drop --from-report/--latency-samples")
    if opts["device_name"] is not None and not opts["device_results"]:
        raise click.UsageError("--device-name names the device of --device-result files: pass them too")
    if from_report is None and not artifact.is_file():
        raise click.BadParameter(f"File {str(artifact)!r} does not exist.", param_hint="'ARTIFACT'")


def _verdicts(artifact, target_name, from_report, budget: Budget, opts) -> list[Verdict]:
    from ..flows.check import check, judge_report

    if from_report is not None:
        return judge_report(
            from_report, target_name, budget=budget, artifact=artifact, targets_dir=opts["targets_dir"]
        )
    measured = take(MeasureRequest, opts, "budget_s", "repeats", "max_repeats")
    return [
        check(
            artifact,
            target_name,
            data_dir=opts["data_dir"],
            budget=budget,
            reference=opts["reference"],
            latency_samples=_samples(opts["latency_samples"]),
            targets_dir=opts["targets_dir"],
            budget_s=measured["budget_s"],
            min_repeats=measured["repeats"],
            max_repeats=max(measured["repeats"], measured["max_repeats"]),
            settings_from=opts["settings_from"],
            profile=opts["profile"],
            device_results=opts["device_results"],
            device_name=opts["device_name"],
        )
    ]


def _text(verdicts: list[Verdict], from_report, top: int) -> None:
    for verdict in verdicts:
        for c in verdict.checks:
            echo(f"{c.status.upper():12s} {c.message}")
        if verdict.settings:
            echo("runtime settings: " + ", ".join(f"{k}={v}" for k, v in verdict.settings.items()))
        for prof in verdict.profiles:
            echo(prof.render(top))
        source = f", judged from {from_report}" if from_report else ""
        echo(
            f"\n{verdict.status.upper()}: {Path(verdict.artifact).name} on {verdict.target}{source} "
            f"(exit {verdict.exit_code})"
        )


def _severity(code: int) -> int:
    """Failed (1) outranks inconclusive (4), which outranks passed (0)."""
    return {0: 0, 4: 1, 1: 2}.get(code, 3)


def _summary_path(github_summary: bool) -> str | None:
    path = os.environ.get("GITHUB_STEP_SUMMARY") if github_summary else None
    if github_summary and not path:
        click.echo("note: --github-summary: $GITHUB_STEP_SUMMARY is not set, no summary written", err=True)
    return path


def register(cli: click.Group) -> None:
    cli.add_command(check_cmd)
