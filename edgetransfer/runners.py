"""Device runners: measure an exported model on the device a target profile names.

A runner is the ``runner:`` part of a target profile, one frozen dataclass per kind::

    runner: {kind: ssh, host: pi@raspberrypi.local, timeout_s: 300}        # Python + edgetransfer[runtime]
    runner: {kind: adb, benchmark_model: /data/local/tmp/benchmark_model}  # LiteRT's native benchmark tool
    runner: {kind: command, template: "my-farm-cli run {model} --threads {threads}"}
    runner: "my-farm-cli run {model} --threads {threads}"                  # same as kind: command

``Runner.run(model, threads)`` copies the model to the device, measures it there, reads the
device's identity and removes the copy again (also when the run fails or times out). Every
failure is a :class:`RuntimeBackendError` naming the device, the command and a fix.
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

from .errors import ConfigError, RuntimeBackendError
from .latency import MEASURED, Latency

DEFAULT_TIMEOUT_S = 300.0
# Removing the copy gets its own time limit: it also runs after the run's limit is spent.
CLEANUP_TIMEOUT_S = 30.0
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
_TEMPLATE_FIELDS = {"model", "threads"}


@dataclass(frozen=True)
class RunnerResult:
    """One measurement on a device."""

    latency: Latency  # provenance MEASURED
    device: str  # the device's identity (``uname -a``, ``ro.product.model``, the bench host)
    command: list[str]  # the measuring command, as run
    kind: str  # ssh, adb or command
    output: str = ""  # the measuring command's own output, kept when asked for a per-op profile


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


@dataclass(frozen=True)
class SshRunner:
    """A Linux device reachable over ``ssh`` with Python and ``edgetransfer[runtime]`` installed.

    Logs in non-interactively (``BatchMode=yes``: a key, no password prompt that would hang CI).

    Attributes:
        host: ``user@host`` as ssh takes it, or a ``Host`` alias from ``~/.ssh/config``.
        port: the ssh port (empty: ssh's own default, 22).
        python: the device's Python interpreter, which has ``edgetransfer[runtime]`` installed.
        remote_dir: an absolute folder on the device the model is copied into (and removed from).
        timeout_s: seconds the whole measurement may take before the device counts as hung (exit 3).
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

    Attributes:
        serial: the device's serial (``adb -s``); empty: the only device attached.
        benchmark_model: where LiteRT's ``benchmark_model`` binary is on the device.
        remote_dir: an absolute device folder the model is pushed into (and removed from).
        use_gpu: run with the GPU delegate (``--use_gpu=true``).
        use_nnapi: run with the NNAPI delegate (``--use_nnapi=true``); not with ``use_gpu``.
        timeout_s: seconds the whole measurement may take before the device counts as hung (exit 3).
    """

    serial: str | None = None
    benchmark_model: str = "/data/local/tmp/benchmark_model"
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
        if self.serial is not None and (not self.serial or any(c.isspace() for c in self.serial)):
            raise _fail(
                f"runner.serial {self.serial!r} is not a device serial", self.profile, "copy it from `adb devices`"
            )

    @property
    def device_label(self) -> str:
        return f"adb device {self.serial}" if self.serial else "the adb device"

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
    """A local command template (``{model}``: a link to the model under a name no shell misreads,
    the real path in ``$EDGETRANSFER_MODEL``; ``{threads}``) whose
    stdout ends with ``python -m edgetransfer.runtime bench --json`` output.

    Attributes:
        template: the command line, with ``{model}`` and ``{threads}``; its last stdout line is the
            bench JSON. A bare string as ``runner:`` is this template.
        timeout_s: seconds the command may take before it counts as hung (exit 3).
    """

    template: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: str = field(default="", compare=False)
    kind: ClassVar[str] = "command"
    op_profile: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_common(self, self.profile)
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
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
                "use only {model} (the local model path) and {threads}",
            )

    def argv(self, model: Path, threads: int | None) -> list[str]:
        """The template's words with ``{model}`` as given; :meth:`run` passes a safe alias instead.

        ``model`` must be a path no shell can misread (see :func:`safe_model_alias`).
        """
        return shlex.split(self.template.format(model=shlex.quote(str(model)), threads=threads or ""))

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Run the template on ``model``; its last stdout line is the bench JSON.

        ``{model}`` becomes a link to the model under a fresh temporary folder, a name of
        ``[A-Za-z0-9_./-]`` only, so no shell the template calls (``sh -c '... {model}'``,
        ``ssh host '... {model}'``) can read a command out of the file's name. The real path is
        in the environment variable ``EDGETRANSFER_MODEL``, for commands that want it.

        Raises:
            RuntimeBackendError: missing executable, non-zero exit, no JSON, timeout.
        """
        with safe_model_alias(model) as alias:
            argv = self.argv(alias, threads)
            call = _Call("command", argv[0] if argv else "?", self.profile, self.timeout_s)
            res = call.exec(argv, env={**os.environ, "EDGETRANSFER_MODEL": str(Path(model).resolve())})
        if res.returncode != 0:
            raise call.error(
                argv,
                f"exited {res.returncode}: {_tail(res.stderr or res.stdout)}",
                "run the runner command by hand to see why",
            )
        doc = _bench_json(call, argv, res.stdout)
        host = doc.get("host") or {}
        device = " / ".join(str(host[k]) for k in ("cpu", "os") if host.get(k)) or argv[0]
        return RunnerResult(_latency(doc, device), device, argv, self.kind)


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
