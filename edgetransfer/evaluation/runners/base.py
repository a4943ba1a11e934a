"""Device runners: measure an exported model on the device a target profile names.

A runner is the ``runner:`` part of a target profile, one frozen dataclass per kind::

    runner: {kind: ssh, host: pi@raspberrypi.local, timeout_s: 300}        # Python + edgetransfer[runtime]
    runner: {kind: adb, benchmark_model: /data/local/tmp/benchmark_model}  # LiteRT's native benchmark tool
    runner: {kind: command, template: "my-farm-cli run {model} --threads {threads}"}
    runner: "my-farm-cli run {model} --threads {threads}"                  # same as kind: command
    runner: {kind: command, template: "dev-run {model} {inputs} {outputs}"} # + the device's outputs

``Runner.run(model, threads)`` copies the model to the device, measures it there, reads the
device's identity and removes the copy again (also when the run fails or times out). Every
failure is a :class:`RuntimeBackendError` naming the device, the command and a fix.

``Runner.predict(model, x, threads)`` (where :attr:`Runner.predicts`) runs the model on the device
over the input tensors ``x`` (one ``.npz`` there, key ``x``) and brings its outputs back (one
``.npz``, key ``y``, one row per image): the device's own accuracy (:mod:`...runtime.device_io`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from ...errors import ConfigError, RuntimeBackendError
from ...runtime.latency import MEASURED, Latency

DEFAULT_TIMEOUT_S = 300.0
# Removing the copy gets its own time limit: it also runs after the run's limit is spent.
CLEANUP_TIMEOUT_S = 30.0
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
_TEMPLATE_FIELDS = {"model", "threads", "inputs", "outputs"}
_IO_FIELDS = {"inputs", "outputs"}


@dataclass(frozen=True)
class RunnerResult:
    """One measurement on a device."""

    latency: Latency  # provenance MEASURED
    device: str  # the device's identity (``uname -a``, ``ro.product.model``, the bench host)
    command: list[str]  # the measuring command, as run
    kind: str  # ssh, adb or command
    output: str = ""  # the measuring command's own output, kept when asked for a per-op profile


@dataclass(frozen=True)
class DeviceOutputs:
    """The device's outputs for input tensors it was sent (``Runner.predict``)."""

    y: np.ndarray  # [images, classes] float32, the file's output dequantized
    runtime: str  # what the device says it ran ("" if it says nothing)
    device: str
    command: list[str]
    kind: str


@runtime_checkable
class Runner(Protocol):
    """Something that measures a model file on a device."""

    kind: ClassVar[str]
    # How the device gives per-op times (``validate --profile``), or "" where it gives none.
    op_profile: ClassVar[str]

    @property
    def timeout_s(self) -> float:
        """Seconds the whole run (copy, measure, identity) may take."""

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Measure ``model`` on the device with ``threads`` threads (its default when ``None``); with
        ``profile`` (only where :attr:`op_profile` says how) keep the output holding the op table."""

    @property
    def predicts(self) -> str:
        """How the device runs a file on input tensors (``Runner.predict``), or ``""``: it gives latency only."""

    def predict(self, model: Path, x: np.ndarray, threads: int | None = None) -> DeviceOutputs:
        """The device's outputs of ``model`` on the input tensors ``x`` (one row per image)."""


def _fail(problem: str, profile: str, fix: str) -> ConfigError:
    return ConfigError(problem, path=profile or None, fix=fix)


def _check_common(r, profile: str) -> None:
    if not r.timeout_s > 0:
        raise _fail(f"runner.timeout_s must be > 0, not {r.timeout_s}", profile, "give the seconds one run may take")


# -- running local commands with a deadline ------------------------------------------------------


class _Call:
    """The commands of one ``Runner.run``: one deadline, and errors that name the device."""

    def __init__(self, kind: str, device: str, profile: str, timeout_s: float):
        self.kind, self.device, self.profile, self.timeout_s = kind, device, profile, timeout_s
        self.deadline = time.monotonic() + timeout_s

    def error(self, argv: list[str], problem: str, fix: str) -> RuntimeBackendError:
        return RuntimeBackendError(
            f"{self.kind} runner on {self.device}: `{shlex.join(argv)}` {problem}", path=self.profile or None, fix=fix
        )

    def exec(
        self, argv: list[str], *, timeout_s: float | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in its own process group; kill the whole group when the time is up.

        Raises:
            RuntimeBackendError: the executable is missing or the time ran out.
        """
        exe = shutil.which(argv[0])
        if exe is None:
            raise self.error(
                argv,
                f"cannot start: '{argv[0]}' is not on PATH",
                _INSTALL.get(argv[0], f"install {argv[0]} or put it on PATH"),
            )
        limit = timeout_s if timeout_s is not None else self.deadline - time.monotonic()
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
        )
        try:
            out, err = proc.communicate(timeout=max(limit, 0.01))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise self.error(
                argv,
                f"did not finish within the runner's timeout_s ({self.timeout_s:g} s); killed",
                "check the device is up and idle, or raise runner.timeout_s in the profile",
            ) from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


_INSTALL = {
    "ssh": "install the OpenSSH client (apt install openssh-client)",
    "scp": "install the OpenSSH client (apt install openssh-client)",
    "adb": "install the Android platform tools (developer.android.com/tools/releases/platform-tools) "
    "and put adb on PATH",
}


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a grandchild left the group and holds the pipes
        proc.communicate(timeout=5)


def _tail(text: str, n: int = 400) -> str:
    text = " | ".join(ln.strip() for ln in text.strip().splitlines() if ln.strip())
    return text if len(text) <= n else "..." + text[-n:]


def _bench_json(call: _Call, argv: list[str], stdout: str) -> dict:
    """The last stdout line as ``python -m edgetransfer.runtime bench --json`` output."""
    lines = stdout.strip().splitlines()
    try:
        doc = json.loads(lines[-1])
        if not isinstance(doc, dict) or "p50" not in doc:
            raise ValueError("not a bench document")
        return doc
    except (IndexError, ValueError):
        got = repr(lines[-1][:120]) if lines else "nothing"
        raise call.error(
            argv,
            f"printed no bench JSON on its last line (got {got})",
            "the command must end with `python -m edgetransfer.runtime bench MODEL --json`",
        ) from None


def _latency(doc: dict, device: str) -> Latency:
    lat = Latency.from_json({**doc, "provenance": MEASURED})
    return Latency(
        **{**{f.name: getattr(lat, f.name) for f in fields(Latency)}, "host": {**lat.host, "device": device}}
    )


# -- ssh -----------------------------------------------------------------------------------------


# -- adb + LiteRT's benchmark_model -------------------------------------------------------------


# -- a free command ------------------------------------------------------------------------------


# -- parsing a profile's runner: ------------------------------------------------------------------


def _outputs(call: _Call, argv: list[str], path: Path, images: int) -> tuple[np.ndarray, str]:
    """The device's output file, read strictly; a bad one is the device's failure (exit 3), naming the file."""
    from ...errors import DataError
    from ...runtime import device_io

    try:
        return device_io.read_outputs(path, images)
    except DataError as exc:
        raise call.error(
            argv,
            f"left an unusable output file ({exc.problem})",
            "the device must write an .npz with key 'y', one row of scores per input image "
            "(`python -m edgetransfer.runtime predict` does)",
        ) from None


def _predict_argv(python: str, model: str, inputs: str, outputs: str, threads: int | None) -> list[str]:
    argv = [python, "-m", "edgetransfer.runtime", "predict", model, "--inputs", inputs, "--outputs", outputs]
    return argv + (["--threads", str(threads)] if threads else [])
