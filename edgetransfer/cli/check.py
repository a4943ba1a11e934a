"""``edgetransfer check``: the CI gate. Exit 0 passed, 1 a budget failed, 4 inconclusive."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import ConfigError, EdgeTransferError
from ..gate import Budget, check
from ..io import atomic_write, require_writable
from ..report.junit import junit_error_xml, junit_xml, summary_markdown
from ._common import echo, emit, json_option
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
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", "target_name", default="host-cpu", show_default=True)
@targets_dir_option
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Held-out images, for the accuracy budget.")
@click.option("--max-latency-ms", type=float, help="p90 latency budget (overrides the profile).")
@click.option("--max-latency-ratio", type=float, help="p50 / p50 of --reference, measured in the same run.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--max-accuracy-drop", type=float, help="points below the float model (overrides the profile).")
@click.option("--max-size-mb", type=float, help="file size budget (overrides the profile).")
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
@click.option("--repeats", type=int, default=3, show_default=True, help="Minimum latency repeats.")
@click.option("--max-repeats", type=int, default=8, show_default=True)
@click.option("--budget-s", type=float, default=1.0, show_default=True, help="Seconds of timed runs per repeat.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML (one test case per budget).")
@click.option("--github-summary", is_flag=True, help="Append a Markdown table to $GITHUB_STEP_SUMMARY.")
@json_option
@click.pass_context
def check_cmd(
    ctx,
    artifact,
    target_name,
    targets_dir,
    data_dir,
    max_latency_ms,
    max_latency_ratio,
    reference,
    max_accuracy_drop,
    max_size_mb,
    max_ram_kb,
    max_flash_kb,
    latency_samples,
    repeats,
    max_repeats,
    budget_s,
    junit,
    github_summary,
    as_json,
) -> None:
    """Enforce latency / accuracy / size budgets of ARTIFACT on --target; exit 0 pass, 1 fail, 4 inconclusive."""
    if junit:
        require_writable(junit, "JUnit file")
    try:
        budget = Budget(max_latency_ms, max_latency_ratio, max_accuracy_drop, max_size_mb, max_ram_kb, max_flash_kb)
        verdict = check(
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
        )
    except EdgeTransferError as exc:
        if junit:  # a CI step reading the file must see this run's error, not the last run's pass
            atomic_write(junit, junit_error_xml(artifact, target_name, exc))
        raise
    if junit:
        atomic_write(junit, junit_xml(verdict))
    if github_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(summary_markdown(verdict))

    def text() -> None:
        for c in verdict.checks:
            echo(f"{c.status.upper():12s} {c.message}")
        echo(f"\n{verdict.status.upper()}: {Path(artifact).name} on {verdict.target} (exit {verdict.exit_code})")

    emit(as_json, verdict.to_json(), text)
    ctx.exit(verdict.exit_code)


def register(cli: click.Group) -> None:
    cli.add_command(check_cmd)
