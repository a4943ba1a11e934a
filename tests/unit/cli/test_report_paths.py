"""Report paths follow CI conventions (issue #38): ``--junit``, ``--report`` and ``quant diagnose --html``
replace an empty file (``mktemp``) or a report of their own kind from any tool (JUnit XML from pytest,
ctest, another gate), while a model, a manifest, an image or the user's notes stay refused (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from edgetransfer import io as et_io
from edgetransfer.errors import ConfigError

PYTEST_JUNIT = (
    '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" '
    'failures="0" skipped="0" tests="1"><testcase classname="t" name="test_a" time="0.1"/></testsuite></testsuites>'
)
CTEST_JUNIT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!-- ctest -->\n<testsuite name="Linux-c++" tests="0"></testsuite>\n'
)


@pytest.mark.parametrize("text", ["", PYTEST_JUNIT, CTEST_JUNIT, "\ufeff" + CTEST_JUNIT])
def test_a_junit_path_holding_nothing_or_any_tools_junit_is_replaced(tmp_path, text):
    path = tmp_path / "junit.xml"
    path.write_text(text, encoding="utf-8")
    assert et_io.require_report_path(path, et_io.JUNIT_KIND, "JUnit file") == path


@pytest.mark.parametrize(
    "name, content",
    [
        ("model.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(64)),
        ("pom.xml", b'<?xml version="1.0"?><project><testsuite/></project>'),  # XML, but not a JUnit root
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(32)),
        ("manifest.json", json.dumps({"kind": "edgetransfer.run", "schema": 3}).encode()),
        ("notes.xml", b"my notes <testsuite> are here"),
    ],
)
def test_anything_else_stays_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="refusing to write the JUnit file over"):
        et_io.require_report_path(path, et_io.JUNIT_KIND, "JUnit file")
    assert path.read_bytes() == content


def test_report_paths_take_an_empty_file_or_our_report_but_not_foreign_junit(tmp_path):
    report = tmp_path / "report.md"
    report.touch()
    assert et_io.require_report_path(report, "edgetransfer.validation", "report") == report
    report.write_text("# edgetransfer validation\n\nrows")
    et_io.require_report_path(report, "edgetransfer.validation", "report")
    report.write_text("# my notes\n")
    with pytest.raises(ConfigError):
        et_io.require_report_path(report, "edgetransfer.validation", "report")
    junit = tmp_path / "r.xml"
    junit.write_text(PYTEST_JUNIT)  # a JUnit is not a validation report
    with pytest.raises(ConfigError):
        et_io.require_report_path(junit, "edgetransfer.validation", "report")
    with pytest.raises(ConfigError, match="folder"):
        et_io.require_report_path(tmp_path, et_io.JUNIT_KIND, "JUnit file")


def test_check_junit_over_mktemp_passes_and_over_a_model_is_exit_2(invoke, untrained_exports, tmp_path):
    """The issue's case: ``check ... --junit "$(mktemp --suffix .xml)"`` is exit 0 and writes the JUnit."""
    art = untrained_exports[("tflite", "int8")].path
    junit = subprocess.run(["mktemp", "--suffix", ".xml", "-p", str(tmp_path)], capture_output=True, text=True)
    junit_path = junit.stdout.strip()
    code, out, err = invoke("check", art, "--target", "pixel4-cpu", "--max-size-mb", "50", "--junit", junit_path)
    assert code == 0, out + err
    suite = ET.parse(junit_path).getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0" and suite.get("errors") == "0"
    with open(junit_path, "w") as fh:  # the previous job's pytest JUnit at that path: replaced too
        fh.write(PYTEST_JUNIT)
    code, _, err = invoke("check", art, "--target", "pixel4-cpu", "--max-size-mb", "50", "--junit", junit_path)
    assert code == 0, err
    assert ET.parse(junit_path).getroot().get("name") == "edgetransfer.check"
    model = tmp_path / "other.tflite"
    shutil.copy(art, model)
    before = model.read_bytes()
    code, _, err = invoke("check", art, "--target", "pixel4-cpu", "--max-size-mb", "50", "--junit", model)
    assert code == 2 and "refusing to write the JUnit file over a file edgetransfer did not write" in err
    assert model.read_bytes() == before


def test_validate_report_over_an_empty_file_is_written(invoke, untrained_exports, tmp_path):
    art = untrained_exports[("tflite", "fp32")].path
    report = tmp_path / "report.json"
    report.touch()
    code, _, err = invoke("validate", art, "--target", "pixel4-cpu", "--report", report)
    assert code == 0, err
    assert json.loads(report.read_text())["kind"] == "edgetransfer.validation"
