"""Issue 37, item 2: a gate's input is untrusted. ``check --from-report`` on a hand-edited
``validation.json`` is exit 2 naming the key, never 0 (passed) and never 70 (a bug), and a JUnit
file left by an earlier passing run is replaced by an error. Before: negative, zero, NaN,
infinite, string or boolean latencies and a negative size passed (exit 0) or crashed the
statistics (exit 70), and a report of one file judged another file with the same name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgetransfer.io import sha256_file
from edgetransfer.records.latency import Latency
from edgetransfer.records.measure import Best, Measurement, Reference, ValidationReport

PASSED_JUNIT = '<testsuite name="edgetransfer.check" tests="1" failures="0" errors="0"></testsuite>\n'


def _report(folder: Path, artifact: Path) -> dict:
    lat = Latency(9.0, 10.0, 11.0, 10.0, 0.1, 2, "measured", samples=(9.0, 10.0), detail={"runtime": "litert"})
    m = Measurement(
        artifact=str(artifact),
        format="tflite",
        precision="int8",
        target="host-cpu",
        size_bytes=2_000_000,
        latency=lat,
        sha256=sha256_file(artifact),
        p90_repeats=(10.0, 10.1, 9.9),
        accuracy=0.9,
        accuracy_drop=0.4,
    )
    rep = ValidationReport(
        held_out={"source": "d", "split": "val", "images": 10},
        reference=Reference(0.9, "model.keras", lat),
        records=(m,),
        best={"host-cpu": Best(str(artifact), 9.0, "measured", 0.9, "litert")},
        classes=("a", "b"),
    )
    return rep.to_json()


def _set(doc, path: str, value):
    """``doc`` with the value at ``path`` (``records.0.latency.p90``; ``.`` alone: the whole document) replaced."""
    if path == ".":
        return value
    *head, last = path.split(".")
    node = doc
    for key in head:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return doc


NAN, INF = float("nan"), float("inf")
# (what is edited, the value, what the message must name)
DOCTORED = [
    ("records.0.latency.p90", -5.0, "latency.p90"),
    ("records.0.latency.p90", 0, "latency.p90"),
    ("records.0.latency.p90", NAN, "latency.p90"),
    ("records.0.latency.p90", INF, "latency.p90"),
    ("records.0.latency.p90", "5", "latency.p90"),
    ("records.0.latency.p90", True, "latency.p90"),
    ("records.0.latency.p50", -1.0, "latency.p50"),
    ("records.0.latency.std", -0.5, "latency.std"),
    ("records.0.latency.samples", [-1.0, 2.0], "latency.samples"),
    ("records.0.latency", "fast", "latency"),
    ("records.0.p90_repeats.0", -10.0, "p90_repeats[0]"),
    ("records.0.p90_repeats.1", NAN, "p90_repeats[1]"),
    ("records.0.p90_repeats.2", -INF, "p90_repeats[2]"),
    ("records.0.p90_repeats", "fast", "p90_repeats"),
    ("records.0.p90_repeats.0", False, "p90_repeats[0]"),
    ("records.0.size_bytes", -1, "size_bytes"),
    ("records.0.size_bytes", 1.5e300, "size_bytes"),
    ("records.0.size_bytes", None, "size_bytes"),
    ("records.0.accuracy", 1.5, "accuracy"),
    ("records.0.target", 7, "target"),
    ("records", "all fine", "records"),
    ("records.0", 5, "records"),
    ("kind", "edgetransfer.run", "kind"),
    ("schema", 99, "schema 99"),
    (".", [1, 2], "expected a mapping"),
]


@pytest.mark.parametrize(("path", "value", "key"), DOCTORED, ids=[f"{p}={v!r}" for p, v, _ in DOCTORED])
def test_a_doctored_report_is_exit_2_naming_the_key(tmp_path, invoke, path, value, key):
    art = tmp_path / "model.tflite"
    art.write_bytes(b"TFL3 stand-in: only its sha256 is read")
    report = tmp_path / "validation.json"
    report.write_text(json.dumps(_set(_report(tmp_path, art), path, value)))  # NaN/Infinity: what json writes
    junit = tmp_path / "junit.xml"
    junit.write_text(PASSED_JUNIT)  # the previous run's pass
    code, out, err = invoke(
        "check", "--from-report", report, "--target", "host-cpu", "--max-latency-ms", "1000", "--junit", junit
    )
    assert code == 2, (code, out, err)
    assert key in err and "validation.json" in err, err
    assert "PASSED" not in out and 'errors="1"' in junit.read_text()


def test_the_unedited_report_passes(tmp_path, invoke):
    art = tmp_path / "model.tflite"
    art.write_bytes(b"TFL3 stand-in")
    report = tmp_path / "validation.json"
    report.write_text(json.dumps(_report(tmp_path, art)))
    for named in ((), (art,), (art.name,)):
        code, out, err = invoke(
            "check", "--from-report", report, *named, "--target", "host-cpu", "--max-latency-ms", "1000"
        )
        assert code == 0 and "PASSED" in out, err
    code, _, _ = invoke("check", "--from-report", report, "--target", "host-cpu", "--max-latency-ms", "5")
    assert code == 1


def test_a_report_of_another_file_with_the_same_name_is_refused(tmp_path, invoke):
    measured = tmp_path / "ci" / "model.tflite"
    measured.parent.mkdir()
    measured.write_bytes(b"the file that was measured")
    report = tmp_path / "ci" / "validation.json"
    report.write_text(json.dumps(_report(tmp_path, measured)))
    other = tmp_path / "model.tflite"
    other.write_bytes(b"another file with the same name")
    junit = tmp_path / "junit.xml"
    junit.write_text(PASSED_JUNIT)
    code, _, err = invoke(
        "check", "--from-report", report, other, "--target", "host-cpu", "--max-latency-ms", "1000", "--junit", junit
    )
    assert code == 2 and "records[0].sha256" in err and "another file of the same name" in err, err
    assert 'errors="1"' in junit.read_text()
    doc = _report(tmp_path, measured)
    doc["records"][0]["sha256"] = ""  # a report that does not say which file it measured
    report.write_text(json.dumps(doc))
    code, _, err = invoke("check", "--from-report", report, measured, "--max-latency-ms", "1000")
    assert code == 2 and "records[0].sha256 is empty" in err, err


def test_a_usage_error_does_not_leave_a_stale_pass(tmp_path, invoke):
    junit = tmp_path / "junit.xml"
    junit.write_text(PASSED_JUNIT)
    code, _, _ = invoke("check", "--junit", junit, "--max-latency-ms", "5")  # neither ARTIFACT nor --from-report
    assert code == 2 and 'errors="1"' in junit.read_text()


@pytest.mark.parametrize("content", ["fifo", "deep", "latin1"])
def test_a_report_that_is_not_a_json_file_is_exit_2(tmp_path, invoke, content):
    import os

    report = tmp_path / "validation.json"
    if content == "fifo":
        os.mkfifo(report)  # would block a plain read forever
    elif content == "deep":
        report.write_text("[" * 100_000 + "]" * 100_000)
    else:
        report.write_bytes(b'{"kind": "edgetransfer.validation", "x": "\xff"}')
    code, _, err = invoke("check", "--from-report", report, "--max-latency-ms", "1000")
    assert code == 2 and "validation.json" in err, err
