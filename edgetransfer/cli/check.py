"""``edgetransfer check``: the CI gate. Exit 0 passed, 1 a budget failed, 4 inconclusive."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import gate
from ..errors import ConfigError, EdgeTransferError
from ..io import append_text, atomic_write, require_own_output, require_writable
from ..records import Budget
from ..records.measure import Verdict
from ..report.junit import junit_error_xml, junit_xml, junit_xml_many, summary_markdown
from ._common import echo, emit, json_option
from ._guards import COUNT, SECONDS
from .targets import targets_dir_option

JUNIT_KIND = "edgetransfer.junit"  # what io.existing_kind calls our JUnit files


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
@click.option("--max-latency-ms", type=float, help="p90 latency budget (overrides the profile).")
@click.option("--max-latency-ratio", type=float, help="p50 / p50 of --reference, measured in the same run.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--max-accuracy-drop", type=float, help="points below the float model (overrides the profile).")
@click.option("--max-size-mb", type=float, help="file size budget (overrides the profile).")
@click.option(
    "--max-peak-memory-mb",
    type=float,
    help="peak resident memory of loading and running the file, in MB (host: measured in a child process).",
)
@click.option(
    "--max-ram-kb", type=float, help="microcontrollers: tensor arena budget in KiB (default: the part's RAM)."
)
@click.option(
    "--max-flash-kb", type=float, help="microcontrollers: model size budget in KiB (default: the part's flash)."
)
@click.option(
    "--latency-samples",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Judge p90s measured elsewhere (bench --json outputs of THIS file) instead of measuring; repeatable.",
)
@click.option("--repeats", type=COUNT, default=3, show_default=True, help="Minimum latency repeats.")
@click.option("--max-repeats", type=COUNT, default=8, show_default=True)
@click.option("--budget-s", type=SECONDS, default=1.0, show_default=True, help="Seconds of timed runs per repeat.")
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
def check_cmd(
    ctx,
    artifact,
    target_name,
    from_report,
    targets_dir,
    data_dir,
    max_latency_ms,
    max_latency_ratio,
    reference,
    max_accuracy_drop,
    max_size_mb,
    max_peak_memory_mb,
    max_ram_kb,
    max_flash_kb,
    latency_samples,
    repeats,
    max_repeats,
    budget_s,
    settings_from,
    profile,
    top,
    junit,
    github_summary,
    as_json,
) -> None:
    """Enforce latency / accuracy / size budgets of ARTIFACT on --target; exit 0 pass, 1 fail, 4 inconclusive."""
    label = artifact or from_report or "check"
    if junit:
        require_writable(junit, "JUnit file")
        require_own_output(junit, JUNIT_KIND, "JUnit file")
        # before anything can fail (a usage error too): the previous run's pass is never left standing
        pending = EdgeTransferError("the check did not finish (the process ended before a verdict)")
        atomic_write(junit, junit_error_xml(label, target_name, pending))
    if artifact is None and from_report is None:
        raise click.UsageError("pass ARTIFACT (measured now) or --from-report validation.json (judged as measured)")
    if from_report is not None and profile:
        raise click.UsageError("--from-report loads no model: profile with `validate --profile` and read its report")
    if from_report is not None and settings_from is not None:
        raise click.UsageError(
            "--from-report judges figures as measured (with their recorded settings): drop --settings-from"
        )
    if from_report is None and not artifact.is_file():
        raise click.BadParameter(f"File {str(artifact)!r} does not exist.", param_hint="'ARTIFACT'")
    if ctx.get_parameter_source("target_name") == click.core.ParameterSource.DEFAULT and not as_json:
        click.echo(f"note: no --target given: checking on {target_name} (this machine)", err=True)
    try:
        budget = Budget(
            latency_p90_ms=max_latency_ms,
            latency_ratio=max_latency_ratio,
            accuracy_drop=max_accuracy_drop,
            size_mb=max_size_mb,
            peak_memory_mb=max_peak_memory_mb,
            ram_kb=max_ram_kb,
            flash_kb=max_flash_kb,
        )
        if from_report is not None:
            verdicts = gate.judge_report(
                from_report, target_name, budget=budget, artifact=artifact, targets_dir=targets_dir
            )
        else:
            from ..flows.check import check

            verdicts = [
                check(
                    artifact,
                    target_name,
                    data_dir=data_dir,
                    budget=budget,
                    reference=reference,
                    latency_samples=_samples(latency_samples),
                    targets_dir=targets_dir,
                    budget_s=budget_s,
                    min_repeats=repeats,
                    max_repeats=max(repeats, max_repeats),
                    settings_from=settings_from,
                    profile=profile,
                )
            ]
    except EdgeTransferError as exc:
        if junit:  # a CI step reading the file must see this run's error, not the last run's pass
            atomic_write(junit, junit_error_xml(label, target_name, exc))
        raise
    _publish(verdicts, junit, github_summary)
    code = max((v.exit_code for v in verdicts), key=_severity)

    def text() -> None:
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

    doc = (
        verdicts[0].to_json()
        if len(verdicts) == 1
        else {"verdicts": [v.to_json() for v in verdicts], "exit_code": code}
    )
    emit(as_json, doc, text)
    ctx.exit(code)


def _severity(code: int) -> int:
    """Failed (1) outranks inconclusive (4), which outranks passed (0)."""
    return {0: 0, 4: 1, 1: 2}.get(code, 3)


def _publish(verdicts: list[Verdict], junit: Path | None, github_summary: bool) -> None:
    if junit:
        atomic_write(
            junit, "".join(junit_xml(v) for v in verdicts[:1]) if len(verdicts) == 1 else junit_xml_many(verdicts)
        )
    if github_summary:
        path = os.environ.get("GITHUB_STEP_SUMMARY")
        if not path:
            click.echo("note: --github-summary: $GITHUB_STEP_SUMMARY is not set, no summary written", err=True)
            return
        why = append_text(path, "".join(summary_markdown(v) for v in verdicts), "$GITHUB_STEP_SUMMARY")
        if why:  # a summary that cannot be written must not turn the verdict into another exit code
            click.echo(f"warning: --github-summary: {why}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(check_cmd)
