"""A test worker that dies or hangs fails the run at once, naming the test (issue #35).

Two things made a dead pytest-xdist worker expensive (measured on the 2-core machine, load 7-11):

- **A hang.** After a worker died, xdist's default (``--max-worker-restart`` = 4 x workers) put the
  dead worker's file back in the queue and started a replacement; with ``--dist loadfile`` the file
  went back to no one (the surviving worker had already been told to shut down, the replacement
  was never scheduled) and the controller waited forever with both workers idle.
- **Silence.** A test stuck in native code (a converter, a runtime) held its worker until CI's own
  timeout, with no name.

What this plugin does (loaded by ``tests/conftest.py``; in a child pytest with ``-p worker_watch``):

- ``--max-worker-restart=0`` unless given: a dead worker is not replaced; xdist reports
  ``worker 'gw0' crashed while running '<test>'`` as a failure of that test.
- At that moment the controller prints the test and how the worker ended (its exit status, e.g.
  ``killed by SIGINT``), and every other worker stops after the test it is running (a flag file the
  workers read after each test), so the run ends within one test instead of after the queue.
- A watchdog per test: :func:`faulthandler.dump_traceback_later` with ``exit=True`` prints every
  thread's Python stack and ends the process when a test runs past ``test_timeout`` seconds
  (``slow_test_timeout`` for ``@pytest.mark.slow``; ini options, or ``EDGETRANSFER_TEST_TIMEOUT``;
  0 turns it off). It is a C thread, so it fires even while native code holds the GIL, which a
  Python timer (pytest-timeout's ``thread`` method) cannot do. In a worker the death is then
  reported as above, with the test's name.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

_STOP_KEY = "edgetransfer_stop_flag"
_state: dict[str, object] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "test_timeout", "seconds a test may run before its worker dumps stacks and exits (0: off)", default="600"
    )
    parser.addini("slow_test_timeout", "the same for tests marked slow", default="2400")


@pytest.hookimpl(tryfirst=True)  # before xdist's pytest_configure reads the option into its DSession
def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and config.option.maxworkerrestart is None:
        config.option.maxworkerrestart = "0"
    _state["config"] = config
    # the watchdog writes to the real stderr: pytest captures fd 2 while a test runs (as its faulthandler plugin does)
    _state["stderr"] = os.fdopen(os.dup(sys.__stderr__.fileno() if sys.__stderr__ else 2), "w")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        _state["flag"] = workerinput.get(_STOP_KEY)
    elif config.pluginmanager.hasplugin("xdist"):
        folder = Path(tempfile.mkdtemp(prefix="edgetransfer-pytest-"))
        _state["folder"], _state["flag"] = folder, str(folder / "stop")


def pytest_unconfigure(config: pytest.Config) -> None:
    _state.pop("config", None)
    if "folder" in _state:
        shutil.rmtree(str(_state.pop("folder")), ignore_errors=True)
    stream = _state.pop("stderr", None)
    if stream is not None:
        stream.close()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Controller side: tell each worker where the stop flag lives."""
    node.workerinput[_STOP_KEY] = _state.get("flag")


def _timeout(item: pytest.Item) -> float:
    if os.environ.get("EDGETRANSFER_TEST_TIMEOUT"):
        return float(os.environ["EDGETRANSFER_TEST_TIMEOUT"])
    name = "slow_test_timeout" if item.get_closest_marker("slow") else "test_timeout"
    return float(item.config.getini(name))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    seconds = _timeout(item)
    if seconds > 0:
        faulthandler.dump_traceback_later(seconds, exit=True, file=_state["stderr"])
    try:
        yield
    finally:
        if seconds > 0:
            faulthandler.cancel_dump_traceback_later()
    flag = _state.get("flag")
    if flag and os.path.exists(str(flag)):  # another worker died: stop after this test
        item.session.shouldstop = Path(str(flag)).read_text() or "a worker died"


def _how_it_ended(node) -> str:
    """The dead worker's exit status, where execnet's process handle is there to ask (a private
    attribute: this is diagnosis only, so anything missing gives an empty string)."""
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    if popen is None:
        return ""
    deadline = time.monotonic() + 5
    while popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    code = popen.returncode
    if code is None:
        return ""
    if code < 0:
        return (
            f" (killed by {signal.Signals(-code).name})" if -code in signal.valid_signals() else f" (signal {-code})"
        )
    return f" (exit status {code})"


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report, sched) -> None:
    """Controller side, when a worker died mid-test: name it now, stop the other workers."""
    node = getattr(report, "node", None)
    worker = getattr(getattr(node, "gateway", None), "id", "a worker")
    message = f"worker {worker} died while running {crashitem}{_how_it_ended(node)}"
    flag = _state.get("flag")
    if flag:
        Path(str(flag)).write_text(message)
    stream = _state.get("stderr")
    if stream is not None:
        stream.write(f"\n{message}: the run stops after the tests now running\n")
        stream.flush()
    config = _state.get("config")
    dsession = config.pluginmanager.getplugin("dsession") if config is not None else None
    if dsession is not None:  # xdist raises Interrupted(message) once the workers are down
        dsession.shouldstop = message
