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
``.npz``, key ``y``, one row per image): the device's own accuracy (:mod:`.runtime.device_io`).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shlex
import shutil
import signal
import string
import subprocess
import time
import uuid
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError, RuntimeBackendError
from .latency import MEASURED, Latency

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


def _outputs(call: _Call, argv: list[str], path: Path, images: int) -> tuple[np.ndarray, str]:
    """The device's output file, read strictly; a bad one is the device's failure (exit 3), naming the file."""
    from .errors import DataError
    from .runtime import device_io

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


# -- ssh -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshRunner:
    """A Linux device reachable over ``ssh`` with Python and ``edgetransfer[runtime]`` installed.

    Logs in non-interactively (``BatchMode=yes``: a key, no password prompt that would hang CI).
    """

    host: str  # user@host as ssh takes it, or a Host alias from ~/.ssh/config
    port: int | None = None
    python: str = "python3"
    remote_dir: str = "/tmp"
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: str = field(default="", compare=False)
    kind: ClassVar[str] = "ssh"
    op_profile: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_common(self, self.profile)
        if not self.host or any(c.isspace() for c in self.host) or self.host.startswith("-"):
            raise _fail(
                f"runner.host {self.host!r} is not an ssh destination",
                self.profile,
                "use user@host, e.g. pi@raspberrypi.local",
            )
        if self.port is not None and not 0 < self.port < 65536:
            raise _fail(f"runner.port {self.port} is out of range", self.profile, "use 1..65535 (ssh's default is 22)")
        if not _SAFE_PATH.match(self.remote_dir):
            raise _fail(
                f"runner.remote_dir {self.remote_dir!r} must be an absolute path of [A-Za-z0-9_./-]",
                self.profile,
                "use e.g. /tmp",
            )
        if not self.python.strip():
            raise _fail("runner.python is empty", self.profile, "use the device's interpreter, e.g. python3")

    def _ssh(self, command: str) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self._opts(), *port, self.host, command]

    def _opts(self) -> list[str]:
        connect = max(1, min(10, int(self.timeout_s)))
        return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}"]

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Copy ``model`` with scp, bench it over ssh, remove the copy.

        Raises:
            RuntimeBackendError: unreachable host, failed copy or bench, garbage output, timeout.
        """
        call = _Call("ssh", self.host, self.profile, self.timeout_s)
        device = self._identity(call)
        remote = f"{self.remote_dir.rstrip('/')}/edgetransfer-{uuid.uuid4().hex[:12]}{Path(model).suffix}"
        bench = [self.python, "-m", "edgetransfer.runtime", "bench", remote, "--json"]
        bench += ["--threads", str(threads)] if threads else []
        argv = self._ssh(shlex.join(bench))
        try:
            port = ["-P", str(self.port)] if self.port else []
            scp = ["scp", "-q", *self._opts(), *port, str(model), f"{self.host}:{remote}"]
            self._check(call, scp, call.exec(scp), "copy")
            res = call.exec(argv)
            self._check(call, argv, res, "bench")
            doc = _bench_json(call, argv, res.stdout)
        except RuntimeBackendError as exc:
            _cleanup(call, self._ssh(shlex.join(["rm", "-f", remote])), remote, exc)
            raise
        _cleanup(call, self._ssh(shlex.join(["rm", "-f", remote])), remote, None)
        return RunnerResult(_latency(doc, device), device, argv, self.kind)

    @property
    def predicts(self) -> str:
        return f"{self.python} -m edgetransfer.runtime predict on {self.host}"

    def _scp(self, src: str, dst: str) -> list[str]:
        port = ["-P", str(self.port)] if self.port else []
        return ["scp", "-q", *self._opts(), *port, src, dst]

    def predict(self, model: Path, x: np.ndarray, threads: int | None = None) -> DeviceOutputs:
        """Copy ``model`` and the inputs (``.npz``) over, run ``python -m edgetransfer.runtime predict``
        there, copy the outputs back, remove all three copies.

        Raises:
            RuntimeBackendError: unreachable host, failed copy or run, an unusable output file, timeout.
        """
        import tempfile

        from .runtime.device_io import INPUTS_KEY, write_npz

        call = _Call("ssh", self.host, self.profile, self.timeout_s)
        device = self._identity(call)
        base = f"{self.remote_dir.rstrip('/')}/edgetransfer-{uuid.uuid4().hex[:12]}"
        r_model, r_in, r_out = base + Path(model).suffix, base + "-x.npz", base + "-y.npz"
        argv = self._ssh(shlex.join(_predict_argv(self.python, r_model, r_in, r_out, threads)))
        rm = self._ssh(shlex.join(["rm", "-f", r_model, r_in, r_out]))
        with tempfile.TemporaryDirectory(prefix="edgetransfer-") as tmp:
            local_in = write_npz(Path(tmp) / "x.npz", **{INPUTS_KEY: x})
            local_out = Path(tmp) / "y.npz"
            try:
                for src, dst, step in ((str(model), r_model, "copy"), (str(local_in), r_in, "copy")):
                    scp = self._scp(src, f"{self.host}:{dst}")
                    self._check(call, scp, call.exec(scp), step)
                self._check(call, argv, call.exec(argv), "predict")
                back = self._scp(f"{self.host}:{r_out}", str(local_out))
                self._check(call, back, call.exec(back), "copy back")
                y, runtime = _outputs(call, argv, local_out, len(x))
            except RuntimeBackendError as exc:
                _cleanup(call, rm, base + "*", exc)
                raise
        _cleanup(call, rm, base + "*", None)
        return DeviceOutputs(y, runtime, device, argv, self.kind)

    def _identity(self, call: _Call) -> str:
        argv = self._ssh("uname -a")
        res = call.exec(argv)
        self._check(call, argv, res, "identity")
        return res.stdout.strip() or self.host

    def _check(self, call: _Call, argv: list[str], res: subprocess.CompletedProcess, step: str) -> None:
        if res.returncode == 0:
            return
        err = _tail(res.stderr or res.stdout)
        if res.returncode == 255 or "Connection closed" in err or "lost connection" in err:
            # ssh exits 255 on its own errors, the remote command's status otherwise (ssh(1), EXIT STATUS).
            raise call.error(
                argv,
                f"could not reach the device (exit {res.returncode}: {err})",
                f"check `ssh -o BatchMode=yes {self.host} true` works: device on, address right, "
                "key-based login set up (ssh-copy-id)",
            )
        if "No module named" in err:
            fix = f'on the device: {self.python} -m pip install "edgetransfer[runtime]"'
        elif res.returncode == 127:
            fix = f"install {self.python} on the device, or set runner.python to its path"
        elif step == "copy":
            fix = f"check {self.remote_dir} exists and is writable on the device, and has space"
        else:
            fix = f"run `ssh {self.host} {bench_hint(self.python)}` by hand to see why"
        raise call.error(argv, f"failed (exit {res.returncode}: {err})", fix)


def bench_hint(python: str) -> str:
    return f"{python} -m edgetransfer.runtime bench MODEL --json"


def _cleanup(call: _Call, argv: list[str], remote: str, failure: RuntimeBackendError | None) -> None:
    """Remove the model's copy; a failure to do so is reported, with how to do it by hand."""
    limit = min(CLEANUP_TIMEOUT_S, max(5.0, call.timeout_s))
    try:
        res = call.exec(argv, timeout_s=limit)
        ok, why = res.returncode == 0, _tail(res.stderr or res.stdout)
    except RuntimeBackendError as exc:
        ok, why = False, exc.problem
    if ok:
        return
    note = f"and {remote} was left on the device (removing it failed: {why})"
    if failure is not None:
        failure.problem += f"; {note}"
        failure.args = (failure.render(),)
        return
    raise call.error(argv, f"measured, {note}", f"remove it by hand: {shlex.join(argv)}")


# -- adb + LiteRT's benchmark_model -------------------------------------------------------------

# The summary line of LiteRT's benchmark tool, BenchmarkLoggingListener::OnBenchmarkEnd in
# tensorflow/lite/tools/benchmark/benchmark_model.cc:
#   "Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2"
# Doubles go through std::ostream, so large ones come as 1.23457e+06.
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
    rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})"
)
# Each Run() (warm-up, then the timed runs) logs Stat<int64_t>::OutputToStream (tsl stats_calculator.h):
#   "count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628"
#   or "count=50 curr=2000(all same)" when every run took as long.
_STAT = re.compile(r"\bcount=\d+.*")
_INIT = re.compile(rf"Initialized session in ({_NUM}) ?ms")
# "Peak memory footprint (MB): init=3.5 overall=55.4" (newer) or "Memory footprint delta from the
# start of the tool (MB): init=55.4961 overall=55.4961" (older).
_MEMORY = re.compile(rf"[Mm]emory footprint.*\(MB\): init=({_NUM}) overall=({_NUM})")


def parse_benchmark_model(text: str, threads: int | None = None) -> Latency:
    """The :class:`Latency` in LiteRT ``benchmark_model`` output, in ms.

    The tool prints no per-run times: p50 is its median (the mean when it prints no percentiles),
    p90 its p95 (an upper bound; ``detail['p90_from']`` says which), p99 its max.

    Raises:
        ValueError: ``text`` has no summary line.
    """
    summary = _SUMMARY.search(text)
    if not summary:
        raise ValueError("no 'Inference timings in us' line")
    init_us, first_us, warm_us, avg_us = (float(g) for g in summary.groups())
    stats = [dict(re.findall(rf"(\w+)=({_NUM})", m.group(0))) for m in _STAT.finditer(text[: summary.start()])]
    st = {k: float(v) for k, v in (stats[-1] if stats else {}).items()}  # the last Run() is the timed one
    p50 = st.get("median", avg_us)
    p90_from = "p95" if "p95" in st else "max" if "max" in st else "avg"
    p90 = st.get("p95", st.get("max", avg_us))
    init = _INIT.search(text)
    mem = _MEMORY.search(text)
    detail = {
        "source": "benchmark_model",
        "p50_from": "median" if "median" in st else "avg",
        "p90_from": p90_from,
        "first_inference_ms": round(first_us / 1e3, 4),
        "warmup_avg_ms": round(warm_us / 1e3, 4),
    }
    ms = {
        k: round(v / 1e3, 4)
        for k, v in {
            "p50": p50,
            "p90": p90,
            "p99": st.get("max", p90),
            "mean": avg_us,
            "std": st.get("std", 0.0),
        }.items()
    }
    return Latency(
        ms["p50"],
        ms["p90"],
        ms["p99"],
        ms["mean"],
        ms["std"],
        int(st.get("count", 0)),
        MEASURED,
        round(float(init.group(1)) if init else init_us / 1e3, 2),
        round(float(mem.group(2)), 2) if mem else None,
        threads,
        detail=detail,
    )


@dataclass(frozen=True)
class AdbRunner:
    """An Android device over ``adb`` with LiteRT's ``benchmark_model`` binary pushed to it.

    ``benchmark_model`` gives latency only. LiteRT's on-device accuracy tools (``inference_diff``,
    ``run_eval``) are native binaries built from source for the phone's ABI and read images, not our
    input tensors, so they are not used. A phone with Python (Termux, ``pip install
    "edgetransfer[runtime]"``) runs the held-out images itself: set ``python`` to its interpreter
    (e.g. ``/data/data/com.termux/files/usr/bin/python``) and validate scores the phone's outputs.
    """

    serial: str | None = None
    benchmark_model: str = "/data/local/tmp/benchmark_model"
    python: str | None = None
    remote_dir: str = "/data/local/tmp"
    use_gpu: bool = False
    use_nnapi: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: str = field(default="", compare=False)
    kind: ClassVar[str] = "adb"
    # benchmark_model's op profiler (tensorflow/lite/tools/benchmark/README.md, --enable_op_profiling)
    op_profile: ClassVar[str] = "benchmark_model --enable_op_profiling=true"

    def __post_init__(self) -> None:
        _check_common(self, self.profile)
        for key in ("benchmark_model", "remote_dir"):
            if not _SAFE_PATH.match(getattr(self, key)):
                raise _fail(
                    f"runner.{key} {getattr(self, key)!r} must be an absolute device path of [A-Za-z0-9_./-]",
                    self.profile,
                    "use e.g. /data/local/tmp/benchmark_model",
                )
        if self.use_gpu and self.use_nnapi:
            raise _fail(
                "runner.use_gpu and runner.use_nnapi are both set",
                self.profile,
                "benchmark_model applies one delegate: keep one",
            )
        if self.python is not None and not _SAFE_PATH.match(self.python) and self.python not in ("python", "python3"):
            raise _fail(
                f"runner.python {self.python!r} must be python3 or an absolute device path of [A-Za-z0-9_./-]",
                self.profile,
                "use e.g. /data/data/com.termux/files/usr/bin/python",
            )
        if self.serial is not None and (not self.serial or any(c.isspace() for c in self.serial)):
            raise _fail(
                f"runner.serial {self.serial!r} is not a device serial", self.profile, "copy it from `adb devices`"
            )

    @property
    def device_label(self) -> str:
        return f"adb device {self.serial}" if self.serial else "the adb device"

    @property
    def predicts(self) -> str:
        return f"{self.python} -m edgetransfer.runtime predict on {self.device_label}" if self.python else ""

    def predict(self, model: Path, x: np.ndarray, threads: int | None = None) -> DeviceOutputs:
        """Push ``model`` and the inputs, run ``python -m edgetransfer.runtime predict`` with the phone's
        Python (``runner.python``), pull the outputs, remove the copies.

        Raises:
            ConfigError: ``runner.python`` is not set (benchmark_model alone gives latency only).
            RuntimeBackendError: no device, a failed push, run or pull, an unusable output file, timeout.
        """
        import tempfile

        from .runtime.device_io import INPUTS_KEY, write_npz

        if not self.python:
            raise _fail(
                "this adb runner measures latency only (benchmark_model): it has no runner.python to run the "
                "held-out images on the phone",
                self.profile,
                "install Python and edgetransfer[runtime] on the phone (Termux) and set runner.python",
            )
        call = _Call("adb", self.device_label, self.profile, self.timeout_s)
        argv = self._adb("shell", "getprop", "ro.product.model")
        res = call.exec(argv)
        self._check(call, argv, res)
        device = res.stdout.strip() or self.device_label
        base = f"{self.remote_dir.rstrip('/')}/edgetransfer-{uuid.uuid4().hex[:12]}"
        r_model, r_in, r_out = base + Path(model).suffix, base + "-x.npz", base + "-y.npz"
        argv = self._adb("shell", shlex.join(_predict_argv(self.python, r_model, r_in, r_out, threads)))
        rm = self._adb("shell", shlex.join(["rm", "-f", r_model, r_in, r_out]))
        with tempfile.TemporaryDirectory(prefix="edgetransfer-") as tmp:
            local_in = write_npz(Path(tmp) / "x.npz", **{INPUTS_KEY: x})
            local_out = Path(tmp) / "y.npz"
            try:
                for step in (
                    self._adb("push", str(model), r_model),
                    self._adb("push", str(local_in), r_in),
                    argv,
                    self._adb("pull", r_out, str(local_out)),
                ):
                    self._check(call, step, call.exec(step))
                y, runtime = _outputs(call, argv, local_out, len(x))
            except RuntimeBackendError as exc:
                _cleanup(call, rm, base + "*", exc)
                raise
        _cleanup(call, rm, base + "*", None)
        return DeviceOutputs(y, runtime, device, argv, self.kind)

    def _adb(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else []), *args]

    def bench_command(self, remote: str, threads: int | None, profile: bool = False) -> str:
        """The device-side command line (benchmark_model flags: tensorflow/lite/tools/benchmark/README.md)."""
        flags = [f"--graph={remote}"] + ([f"--num_threads={threads}"] if threads else [])
        flags += ["--enable_op_profiling=true"] if profile else []
        flags += ["--use_gpu=true"] if self.use_gpu else []
        flags += ["--use_nnapi=true"] if self.use_nnapi else []
        return shlex.join([self.benchmark_model, *flags])

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Push ``model``, run benchmark_model on it (``profile``: with its op profiler), remove it.

        Raises:
            RuntimeBackendError: no device, missing or crashing benchmark_model, garbage output, timeout.
        """
        call = _Call("adb", self.device_label, self.profile, self.timeout_s)
        argv = self._adb("shell", "getprop", "ro.product.model")
        res = call.exec(argv)
        self._check(call, argv, res)
        device = res.stdout.strip() or self.device_label
        call.device = f"{device} ({self.serial})" if self.serial else device
        remote = f"{self.remote_dir.rstrip('/')}/edgetransfer-{uuid.uuid4().hex[:12]}{Path(model).suffix}"
        argv = self._adb("shell", self.bench_command(remote, threads, profile))
        try:
            push = self._adb("push", str(model), remote)
            self._check(call, push, call.exec(push))
            res = call.exec(argv)
            self._check(call, argv, res)
            try:
                lat = parse_benchmark_model(res.stdout + "\n" + res.stderr, threads)
            except ValueError:
                raise call.error(
                    argv,
                    f"printed no benchmark_model summary (got {_tail(res.stdout, 160)!r})",
                    f"check {self.benchmark_model} is LiteRT's benchmark_model; run the command "
                    "by hand to see its output",
                ) from None
        except RuntimeBackendError as exc:
            _cleanup(call, self._adb("shell", shlex.join(["rm", "-f", remote])), remote, exc)
            raise
        _cleanup(call, self._adb("shell", shlex.join(["rm", "-f", remote])), remote, None)
        lat = Latency(
            **{
                **{f.name: getattr(lat, f.name) for f in fields(Latency)},
                "host": {
                    "device": device,
                    "runtime": "benchmark_model",
                    "serial": self.serial,
                    "delegate": "gpu" if self.use_gpu else "nnapi" if self.use_nnapi else "cpu",
                },
            }
        )
        return RunnerResult(lat, device, argv, self.kind, res.stdout + "\n" + res.stderr if profile else "")

    def _check(self, call: _Call, argv: list[str], res: subprocess.CompletedProcess) -> None:
        if res.returncode == 0:
            return
        err = _tail(res.stderr or res.stdout)
        if re.search(r"no devices|device .*not found|device offline|unauthorized|more than one device", err):
            raise call.error(
                argv,
                f"could not reach the device ({err})",
                "connect it, enable USB debugging, accept the host key and check `adb devices` lists it"
                + ("" if self.serial else "; with several devices set runner.serial"),
            )
        if res.returncode == 127 or "not found" in err or "Permission denied" in err:
            raise call.error(
                argv,
                f"failed (exit {res.returncode}: {err})",
                f"push LiteRT's benchmark_model for the device's ABI to {self.benchmark_model} and "
                f"`adb shell chmod +x {self.benchmark_model}` (or set runner.benchmark_model)",
            )
        crashed = res.returncode > 128 or res.returncode < 0
        what = (
            f"crashed (exit {res.returncode}, signal {abs(res.returncode) % 128})"
            if crashed
            else f"failed (exit {res.returncode})"
        )
        raise call.error(
            argv,
            f"{what}: {err}",
            "run the command by hand with `adb shell` to see why; a delegate "
            "that rejects the model (use_gpu/use_nnapi) is a common cause",
        )


# -- a free command ------------------------------------------------------------------------------

_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,16}$")


@contextlib.contextmanager
def safe_model_alias(model: str | Path):
    """Yield a path to ``model`` that needs no quoting in any shell; removed afterwards.

    A symbolic link ``<tmp>/edgetransfer-XXXX/model<.suffix>``: the folder comes from
    :func:`tempfile.mkdtemp` (letters, digits, ``_``) under the first of ``$TMPDIR`` and ``/tmp``
    whose path is itself ``[A-Za-z0-9_./-]``. Quoting the real name is not enough: a template that
    calls a shell itself (``sh -c '... {model}'``) undoes the quotes with its own.
    """
    import tempfile

    model = Path(model).resolve()
    bases = [tempfile.gettempdir(), "/tmp"]
    base = next((b for b in bases if _SAFE_PATH.match(b) and os.path.isdir(b)), None)
    if base is None:
        raise ConfigError(
            f"no temporary folder with a plain name (tried {', '.join(map(repr, bases))})",
            fix="set TMPDIR to a folder whose path is only letters, digits, _ . / -",
        )
    folder = Path(tempfile.mkdtemp(prefix="edgetransfer-", dir=base))
    suffix = model.suffix if _SAFE_SUFFIX.match(model.suffix) else ""
    alias = folder / f"model{suffix}"
    try:
        alias.symlink_to(model)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class CommandRunner:
    """A local command template whose stdout ends with ``python -m edgetransfer.runtime bench --json`` output.

    Fields: ``{model}`` (a link to the model under a name no shell misreads, the real path in
    ``$EDGETRANSFER_MODEL``), ``{threads}``, and, together, ``{inputs}`` and ``{outputs}``: an
    ``.npz`` of input tensors (key ``x``) the command hands the device, and the ``.npz`` it must
    write back (key ``y``, one row per image). With those the device's accuracy is measured too;
    a latency run sends one random image.
    """

    template: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: str = field(default="", compare=False)
    kind: ClassVar[str] = "command"
    op_profile: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_common(self, self.profile)
        try:
            names = self._fields()
        except ValueError as exc:
            raise _fail(
                f"runner template {self.template!r} is not a valid template ({exc})",
                self.profile,
                "write {model} and {threads}; double other braces: {{ }}",
            ) from None
        if not self.template.strip() or names - _TEMPLATE_FIELDS:
            raise _fail(
                f"runner template {self.template!r} uses {sorted(names - _TEMPLATE_FIELDS)}",
                self.profile,
                "use only {model} (the local model path), {threads}, and {inputs} with {outputs}",
            )
        if len(names & _IO_FIELDS) == 1:
            raise _fail(
                f"runner template {self.template!r} uses {sorted(names & _IO_FIELDS)[0]} alone",
                self.profile,
                "use {inputs} and {outputs} together: the .npz the device reads and the one it writes",
            )

    def _fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}

    @property
    def predicts(self) -> str:
        return "the runner command's {inputs} and {outputs}" if self._fields() >= _IO_FIELDS else ""

    def argv(self, model: Path, threads: int | None, inputs: Path | None = None, outputs: Path | None = None):
        """The template's words with ``{model}`` as given; :meth:`run` passes a safe alias instead.

        ``model`` (and ``inputs``/``outputs``) must be paths no shell can misread (see :func:`safe_model_alias`).
        """
        q = {k: shlex.quote(str(v)) if v is not None else "" for k, v in (("inputs", inputs), ("outputs", outputs))}
        return shlex.split(self.template.format(model=shlex.quote(str(model)), threads=threads or "", **q))

    def _exec(self, model: Path, threads: int | None, x: np.ndarray | None):
        """Run the template once; ``x`` (or one random image where the template takes inputs) as ``{inputs}``.
        Returns ``(call, argv, completed process, outputs file or None)`` with the outputs read if any."""
        from .runtime.device_io import INPUTS_KEY, write_npz

        with safe_model_alias(model) as alias:
            io_paths: tuple[Path | None, Path | None] = (None, None)
            if self.predicts:
                inputs, outputs = alias.parent / "inputs.npz", alias.parent / "outputs.npz"
                write_npz(inputs, **{INPUTS_KEY: x if x is not None else _probe_tensor(model)})
                io_paths = (inputs, outputs)
            argv = self.argv(alias, threads, *io_paths)
            call = _Call("command", argv[0] if argv else "?", self.profile, self.timeout_s)
            res = call.exec(argv, env={**os.environ, "EDGETRANSFER_MODEL": str(Path(model).resolve())})
            if res.returncode != 0:
                raise call.error(
                    argv,
                    f"exited {res.returncode}: {_tail(res.stderr or res.stdout)}",
                    "run the runner command by hand to see why",
                )
            got = _outputs(call, argv, io_paths[1], len(x)) if x is not None and io_paths[1] else None
        return call, argv, res, got

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Run the template on ``model``; its last stdout line is the bench JSON.

        ``{model}`` becomes a link to the model under a fresh temporary folder, a name of
        ``[A-Za-z0-9_./-]`` only, so no shell the template calls (``sh -c '... {model}'``,
        ``ssh host '... {model}'``) can read a command out of the file's name. The real path is
        in the environment variable ``EDGETRANSFER_MODEL``, for commands that want it.

        Raises:
            RuntimeBackendError: missing executable, non-zero exit, no JSON, timeout.
        """
        call, argv, res, _ = self._exec(model, threads, None)
        doc = _bench_json(call, argv, res.stdout)
        device = _command_device(doc, argv)
        return RunnerResult(_latency(doc, device), device, argv, self.kind)

    def predict(self, model: Path, x: np.ndarray, threads: int | None = None) -> DeviceOutputs:
        """The command's outputs for the input tensors ``x`` (``{inputs}`` -> ``{outputs}``).

        Raises:
            ConfigError: the template has no ``{inputs}``/``{outputs}``.
            RuntimeBackendError: non-zero exit, no or an unusable output file, timeout.
        """
        if not self.predicts:
            raise _fail(
                f"runner template {self.template!r} has no {{inputs}} and {{outputs}}: it measures latency only",
                self.profile,
                "add {inputs} (the .npz the device reads, key x) and {outputs} (the .npz it writes, key y)",
            )
        _, argv, res, got = self._exec(model, threads, x)
        assert got is not None  # x was given and the template takes outputs
        try:
            device = _command_device(json.loads(res.stdout.strip().splitlines()[-1]), argv)
        except (IndexError, ValueError, AttributeError):
            device = argv[0]
        return DeviceOutputs(got[0], got[1], device, argv, self.kind)


def _command_device(doc, argv: list[str]) -> str:
    """The device a command names in its JSON's ``host`` (cpu / os), else the command itself."""
    host = doc.get("host") if isinstance(doc, dict) else None
    host = host if isinstance(host, dict) else {}
    return " / ".join(str(host[k]) for k in ("cpu", "os") if host.get(k)) or argv[0]


def _probe_tensor(model: Path) -> np.ndarray:
    """One random image as ``model``'s input tensor (this host's runtime reads its input spec)."""
    from .runtime import load_session
    from .runtime.device_io import to_tensor

    spec = load_session(model).input_spec
    return to_tensor(np.random.default_rng(0).uniform(0, 255, (1, spec.size, spec.size, 3)), spec)


# -- parsing a profile's runner: ------------------------------------------------------------------

KINDS: dict[str, type] = {"ssh": SshRunner, "adb": AdbRunner, "command": CommandRunner}


def _type_ok(value, hint: str) -> bool:
    """``value`` against a field's annotation string (``str``, ``int | None``, ``float``, ``bool``)."""
    if value is None:
        return "None" in hint
    if isinstance(value, bool):
        return "bool" in hint
    if isinstance(value, int):
        return "int" in hint or "float" in hint
    if isinstance(value, float):
        return "float" in hint
    return isinstance(value, str) and "str" in hint


def parse(raw, path: str | Path) -> Runner:
    """The runner a profile's ``runner:`` value describes (a string is a ``command`` template).

    Args:
        raw: the YAML value: a string, or a mapping with ``kind`` (ssh, adb, command) and its fields.
        path: the profile file, named in errors.

    Raises:
        ConfigError: an unknown kind or key, a missing or mistyped field, a bad value.
    """
    profile = str(path)
    if isinstance(raw, str):
        return CommandRunner(template=raw, profile=profile)
    if not isinstance(raw, dict):
        raise _fail(
            "'runner' must be a command string or a mapping with 'kind'",
            profile,
            "e.g. runner: {kind: ssh, host: pi@raspberrypi.local}",
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(f"runner.kind {kind!r} is not a runner kind", profile, f"use one of {', '.join(KINDS)}")
    cls = KINDS[kind]
    hints = {f.name: str(f.type) for f in fields(cls) if f.name != "profile"}
    args = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in hints:
            close = difflib.get_close_matches(str(key), hints, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise _fail(
                f"unknown key 'runner.{key}' for kind {kind}", profile, f"{hint}known keys: kind, {', '.join(hints)}"
            )
        if not _type_ok(value, hints[key]):
            raise _fail(
                f"runner.{key} must be {hints[key]}, not {type(value).__name__} ({value!r})",
                profile,
                f"fix runner.{key}",
            )
        args[key] = float(value) if key == "timeout_s" else value
    missing = [
        f.name for f in fields(cls) if f.name not in args and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise _fail(f"runner of kind {kind} needs '{missing[0]}'", profile, f"add runner.{missing[0]}")
    return cls(**args, profile=profile)
