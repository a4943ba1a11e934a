"""The ssh runner: copy the file to a device, time it there with the profile's bench command."""

from __future__ import annotations

import shlex
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...errors import RuntimeBackendError
from .base import (
    _SAFE_PATH,
    CLEANUP_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    DeviceOutputs,
    RunnerResult,
    _bench_json,
    _Call,
    _check_common,
    _fail,
    _latency,
    _outputs,
    _predict_argv,
    _tail,
)


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

        from ...runtime.device_io import INPUTS_KEY, write_npz

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
