"""Every line a command prints on stderr is ours: third-party chatter (ONNX Runtime's calibration
prints, TensorFlow / absl / tf2onnx logging, converter and delegate lines) is silenced at its source
(issue #38). The commands run in a child process, as a user runs them, so prints straight to file
descriptor 2 (native code) are caught too, not only what Python's ``sys.stderr`` sees."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# The shapes of the lines edgetransfer itself writes to stderr: its warnings and notes
# (cli/__init__.py _Formatter), findings, the error block (message, fix), progress stage lines
# (only on a terminal, listed for completeness) and the calibration warnings of
# quantization/calibration.py.
OURS = re.compile(r"^(warning: |note: |error: |finding: |  fix: |fix: |» |WARNING: calibration: |\s*$)")


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it: nothing pre-silenced by the test
    return subprocess.run(
        [sys.executable, "-m", "edgetransfer", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


def foreign_lines(stderr: str) -> list[str]:
    """The stderr lines edgetransfer did not write."""
    return [line for line in stderr.splitlines() if not OURS.match(line)]


def assert_quiet(res: subprocess.CompletedProcess, ok: tuple[int, ...] = (0,)) -> None:
    assert res.returncode in ok, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert foreign_lines(res.stderr) == [], "third-party lines on stderr:\n" + res.stderr


@pytest.fixture(scope="module")
def exported(untrained_run, tmp_path_factory) -> Path:
    """``edgetransfer export`` of every format and precision of the tiny untrained run, stderr checked."""
    out = tmp_path_factory.mktemp("quiet-export")
    precisions = [a for p in ("fp32", "fp16", "dynamic", "int8", "int16x8") for a in ("--precision", p)]
    res = run_cli(
        "export",
        untrained_run.run_dir,
        "--format",
        "all",
        "--format",
        "tflm",
        *precisions,
        "--calibration-size",
        "12",
        "--out",
        out,
    )
    assert_quiet(res)
    return out


def test_export_every_format_and_precision_is_quiet(exported):
    names = {p.name for p in exported.iterdir()}
    for precision in ("fp32", "fp16", "dynamic", "int8"):  # ONNX has no int16x8 (refused, not written)
        assert any(n.startswith(f"model_{precision}") and n.endswith(".onnx") for n in names), (precision, names)
    for precision in ("fp32", "fp16", "dynamic", "int8", "int16x8"):
        assert any(n.startswith(f"model_{precision}") and n.endswith(".tflite") for n in names), (precision, names)
    assert (exported / "tflm").is_dir()


@pytest.mark.slow  # a child export per method (a minute each under load); the export of every format stays fast
@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_export_histogram_calibration_is_quiet(untrained_run, tmp_path, method):
    """The histogram calibrators are the ones that print "Number of histogram bins : 128 ..." (issue #38)."""
    res = run_cli(
        "export", untrained_run.run_dir, "--format", "onnx", "--precision", "int8", "--calibration-method", method,
        "--calibration-size", "12", "--out", tmp_path,
    )  # fmt: skip
    assert_quiet(res)
    assert list(tmp_path.glob("model_int8*.onnx"))


def test_validate_is_quiet(exported):
    files = sorted(exported.glob("*.tflite")) + sorted(exported.glob("*.onnx"))
    assert_quiet(run_cli("validate", *files, "--target", "host-cpu", "--budget-s", "0.2"))


def test_check_is_quiet(exported, tmp_path):
    model = next(exported.glob("*int8*.tflite"))
    junit = tmp_path / "budgets.xml"
    assert_quiet(run_cli("check", model, "--target", "host-cpu", "--max-size-mb", "5", "--junit", junit), ok=(0, 4))
    assert junit.read_text().startswith("<?xml")


@pytest.mark.slow  # a child process starting TensorFlow; export, validate and check stay fast
def test_quant_diagnose_is_quiet(exported):
    model = next(exported.glob("*int8*.onnx"))
    assert_quiet(run_cli("quant", "diagnose", model, "--top", "1", "--images", "4"))
