"""CI renderings of a verdict: JUnit XML (one test case per budget) and a Markdown summary."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..errors import EdgeTransferError
from ..io import append_text, atomic_write
from ..records.measure import Verdict
from ..records.vocab import Status

PASSED, FAILED, INCONCLUSIVE = Status.PASSED, Status.FAILED, Status.INCONCLUSIVE


def junit_xml(verdict: Verdict) -> str:
    """JUnit XML: one test case per budget; failed -> <failure>, inconclusive -> <error>."""
    cases = []
    for c in verdict.checks:
        inner = ""
        if c.status == FAILED:
            inner = f"<failure message={quoteattr(c.message)}>{escape(c.message)}</failure>"
        elif c.status == INCONCLUSIVE:
            inner = f'<error type="inconclusive" message={quoteattr(c.message)}>{escape(c.message)}</error>'
        cases.append(
            f"  <testcase classname={quoteattr('edgetransfer.check.' + verdict.target)} "
            f'name={quoteattr(c.name)} time="0">{inner}<system-out>{escape(c.message)}</system-out></testcase>'
        )
    failures = sum(c.status == FAILED for c in verdict.checks)
    errors = sum(c.status == INCONCLUSIVE for c in verdict.checks)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="edgetransfer.check" '
        f'tests="{len(verdict.checks)}" failures="{failures}" errors="{errors}">\n'
        + "\n".join(cases)
        + "\n</testsuite>\n"
    )


def junit_xml_many(verdicts: list[Verdict]) -> str:
    """One JUnit document for several verdicts (``check --from-report`` over several files)."""
    bodies = [junit_xml(v).split("\n", 2)[2].rsplit("</testsuite>", 1)[0] for v in verdicts]
    tests = sum(len(v.checks) for v in verdicts)
    failures = sum(c.status == FAILED for v in verdicts for c in v.checks)
    errors = sum(c.status == INCONCLUSIVE for v in verdicts for c in v.checks)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="edgetransfer.check" '
        f'tests="{tests}" failures="{failures}" errors="{errors}">\n' + "".join(bodies) + "</testsuite>\n"
    )


def summary_markdown(verdict: Verdict) -> str:
    """A Markdown table for ``$GITHUB_STEP_SUMMARY``."""
    icon = {PASSED: "✅", FAILED: "❌", INCONCLUSIVE: "⚠️"}
    rows = [
        f"| {c.name} | {icon[c.status]} {c.status} | {c.figure} {c.unit} | {c.budget} {c.unit} | {c.provenance} |"
        for c in verdict.checks
    ]
    return "\n".join(
        [
            f"### edgetransfer check: `{Path(verdict.artifact).name}` on `{verdict.target}`: {verdict.status}",
            "",
            "| budget | result | figure | limit | latency is |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def junit_error_xml(artifact: str | Path, target: str, error: EdgeTransferError) -> str:
    """JUnit XML for a gate that could not run: an ``<error>`` case, so a CI step that reads
    the file never finds the previous run's "failures=0" (issue #13)."""
    msg = error.render()
    name = quoteattr(f"edgetransfer.check.{target}")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="edgetransfer.check" tests="1" '
        f'failures="0" errors="1">\n  <testcase classname={name} name={quoteattr(Path(artifact).name)} '
        f'time="0"><error type={quoteattr(type(error).__name__)} message={quoteattr(msg)}>{escape(msg)}'
        f"</error></testcase>\n</testsuite>\n"
    )


# ----------------------------------------------------------------------------- the files the CI step reads


def write_pending(path: Path, artifact: str | Path, target: str) -> None:
    """An error case written before any model is loaded: a crash mid-check must leave an error, never a
    stale pass."""
    pending = EdgeTransferError("the check did not finish (the process ended before a verdict)")
    text = junit_error_xml(artifact, target, pending)
    atomic_write(path, text)


def write_error(path: Path, artifact: str | Path, target: str, error: EdgeTransferError) -> None:
    """This run's error as the JUnit file: a CI step reading it must see it, not the last run's pass."""
    text = junit_error_xml(artifact, target, error)
    atomic_write(path, text)


def publish(verdicts: list[Verdict], junit: Path | None, summary: str | None) -> str | None:
    """The JUnit file (``junit``) and the Markdown summary appended to ``summary`` (``$GITHUB_STEP_SUMMARY``),
    each rendered before anything is written. Returns why the summary could not be written, or ``None``:
    a summary that cannot be written must not turn the verdict into another exit code."""
    xml = junit_xml(verdicts[0]) if len(verdicts) == 1 else junit_xml_many(verdicts)
    markdown = "".join(summary_markdown(v) for v in verdicts)
    if junit:
        atomic_write(junit, xml)
    return append_text(summary, markdown, "$GITHUB_STEP_SUMMARY") if summary else None
