"""The adb runner: push the file to an Android device, time it with TFLite's benchmark_model."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...errors import ConfigError, RuntimeBackendError
from ...runtime.latency import MEASURED, Latency
from .base import (
    _SAFE_PATH,
    DEFAULT_TIMEOUT_S,
    DeviceOutputs,
    RunnerResult,
    _Call,
    _check_common,
    _fail,
    _outputs,
    _predict_argv,
    _tail,
)
from .ssh import _cleanup

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

    Attributes:
        serial: the device's serial (``adb -s``); empty: the only device attached.
        benchmark_model: where LiteRT's ``benchmark_model`` binary is on the device.
        remote_dir: an absolute device folder the model is pushed into (and removed from).
        use_gpu: run with the GPU delegate (``--use_gpu=true``).
        use_nnapi: run with the NNAPI delegate (``--use_nnapi=true``); not with ``use_gpu``.
        timeout_s: seconds the whole measurement may take before the device counts as hung (exit 3).
        python: the device's Python with ``edgetransfer[runtime]`` (Termux); set: the phone runs the
            held-out images and its accuracy is measured.
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

        from ...runtime.device_io import INPUTS_KEY, write_npz

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
                    self._check(call, step, call.exec(step), python=step is argv)
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

    def _check(self, call: _Call, argv: list[str], res: subprocess.CompletedProcess, python: bool = False) -> None:
        if res.returncode == 0:
            return
        err = _tail(res.stderr or res.stdout)
        if python and (res.returncode == 127 or "not found" in err or "No module named" in err):
            raise call.error(  # the phone's Python (runner.python) or its edgetransfer is missing
                argv,
                f"failed (exit {res.returncode}: {err})",
                f"on the phone (Termux): pkg install python, then {self.python} -m pip install "
                '"edgetransfer[runtime]"; or set runner.python to the interpreter\'s path',
            )
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
