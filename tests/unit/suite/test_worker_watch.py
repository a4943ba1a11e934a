"""A worker that dies or hangs fails the run fast, naming the test (tests/worker_watch.py, issue #35).

Each test runs a child pytest with two xdist workers on a few tiny test files written here: one
test kills its own worker (or hangs in a sleep), the other file's tests would take a minute in all.
Without the plugin the first case waited forever (the controller idle, both workers idle)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("xdist")
TESTS = Path(__file__).resolve().parents[2]  # tests/, where worker_watch.py is

_DIES = """
import os, signal
def test_before():
    pass
def test_dies():
    os.kill(os.getpid(), signal.SIGKILL)
def test_after():
    pass
"""
_HANGS = """
import time
def test_hangs():
    time.sleep(600)
"""
_SLOW = """
import time, pytest
@pytest.mark.parametrize("i", range(30))
def test_slow(i):
    time.sleep(2)
"""


def _run(tmp_path: Path, files: dict[str, str], *extra: str, env: dict | None = None) -> tuple[int, str, float]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    child = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    child.pop("EDGETRANSFER_TEST_TIMEOUT", None)
    child.update(env or {})
    args = [sys.executable, "-m", "pytest", "-p", "worker_watch", "-p", "no:cacheprovider", "-n", "2"]
    start = time.monotonic()
    res = subprocess.run(
        [*args, "--dist", "loadfile", *extra, str(tmp_path)],
        cwd=tmp_path, env=child, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    return res.returncode, res.stdout + res.stderr, time.monotonic() - start


def _passed(out: str) -> int:
    found = re.search(r"(\d+) passed", out)
    return int(found.group(1)) if found else 0


def test_a_killed_worker_fails_the_run_at_once_naming_its_test(tmp_path):
    code, out, seconds = _run(tmp_path, {"test_a.py": _DIES, "test_b.py": _SLOW})
    assert code != 0, out
    assert "crashed while running 'test_a.py::test_dies'" in out, out  # xdist's failure report
    assert "worker gw" in out and "died while running test_a.py::test_dies (killed by SIGKILL)" in out, out
    assert "replacing crashed worker" not in out  # --max-worker-restart=0: not replaced, no hang
    # the other worker stopped after its current 2 s test instead of running test_b's 60 s
    assert seconds < 45, f"{seconds:.0f} s:\n{out}"
    assert _passed(out) < 30, out


def test_a_hung_test_is_ended_by_the_watchdog_naming_it(tmp_path):
    code, out, seconds = _run(
        tmp_path, {"test_h.py": _HANGS, "test_b.py": _SLOW}, env={"EDGETRANSFER_TEST_TIMEOUT": "3"}
    )
    assert code != 0, out
    assert "Timeout (0:00:03)!" in out, out  # faulthandler's dump of every thread
    assert 'test_h.py", line 4 in test_hangs' in out, out  # ...showing where the test was stuck
    assert "died while running test_h.py::test_hangs (exit status 1)" in out, out
    assert seconds < 45, f"{seconds:.0f} s:\n{out}"


@pytest.mark.parametrize("given", ["", "--max-worker-restart=1"])
def test_max_worker_restart_defaults_to_zero_and_can_be_set(tmp_path, given):
    code, out, _ = _run(tmp_path, {"test_a.py": _DIES}, *([given] if given else []))
    assert code != 0
    assert ("worker restarting disabled" in out) is (not given), out
