"""The TFLM runtime: the TensorFlow Lite for Microcontrollers host interpreter (real TFLM kernels),
its tensor arena, whether a file fits a microcontroller, and its latency estimate.

Registered in :mod:`edgetransfer.runtime.spec` as ``tflm`` (kind ``mcu``): ``TFLM`` is the
runtime, :func:`require_tflm_ops` the op check, :func:`memory_fit` the memory measurement and
:func:`estimate_latency` the latency estimate. The arena is measured in a child process
(``python -m edgetransfer.runtime.tflm arena MODEL``, see :func:`measure_arena`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError, RuntimeBackendError
from .base import InputSpec, quantize_input, require_file
from .tflm_ops import check_tflm, model_bytes, require_tflm_ops

__all__ = [
    "TFLM",
    "TFLMSession",
    "estimate_latency",
    "fits",
    "measure_arena",
    "memory_fit",
    "require_tflm_ops",
]

_ARENA_CAP = 1 << 30  # no microcontroller has 1 GiB of RAM: past it, allocation fails for another reason


def _runtime():
    try:
        return importlib.import_module("tflite_micro.python.tflite_micro.runtime")
    except Exception as exc:  # ImportError, or a binary built against another NumPy
        raise MissingDependencyError(
            f"the TFLM host interpreter could not be imported ({exc})",
            fix='pip install "edgetransfer[tflm]"  (installs tflite-micro)',
        ) from None


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture file descriptor 2 (TFLM's C++ MicroPrintf writes there, not to ``sys.stderr``):
    keeps the allocator's failure lines for messages and out of the user's terminal."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read().decode(errors="replace").splitlines())


def _interpreter(data: bytes, arena: int):
    """A TFLM interpreter with ``arena`` bytes, or ``(None, the TFLM log)`` if it cannot allocate."""
    rt = _runtime()
    with _captured_stderr() as log:
        try:
            return rt.Interpreter.from_bytes(data, arena_size=int(arena)), log
        except RuntimeError:
            pass
    return None, log


_ARENAS: dict[str, int] = {}  # sha256 of the model -> measured arena (the search takes seconds)


def measure_arena(tflite: bytes | str | Path, *, timeout_s: float = 600) -> int:
    """The smallest tensor arena, in bytes, with which TFLM allocates and runs the model,
    measured in a child process (see :func:`_measure_arena_here` for the method).

    TFLM is native code that aborts the process on some graphs (e.g. an untrained ReLU6 model's
    degenerate quantization), so it never runs first in this one: a crash becomes an error naming
    the file. Results are cached per file content.

    Raises:
        UnsupportedError: the model cannot run under TFLM (op or precision).
        RuntimeBackendError: TFLM crashed, timed out, or cannot allocate the model.
    """
    import subprocess
    import sys

    data = model_bytes(tflite)
    where = None if isinstance(tflite, (bytes, bytearray)) else Path(tflite)
    check_tflm(data, path=where)
    digest = hashlib.sha256(data).hexdigest()
    if digest in _ARENAS:
        return _ARENAS[digest]
    with tempfile.TemporaryDirectory(prefix="et-tflm-") as tmp:
        model = Path(tmp) / "model.tflite"
        model.write_bytes(data)
        cmd = [sys.executable, "-m", __name__, "arena", str(model)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeBackendError(
                f"TFLM did not finish measuring the arena within {timeout_s:g} s",
                path=where,
                fix="check the file runs in LiteRT first",
            ) from None
    _ARENAS[digest] = _arena_answer(res, where)
    return _ARENAS[digest]


def _arena_answer(res, where) -> int:
    """The child's JSON answer, or its error re-raised with its class, or its crash named."""
    import signal

    from .. import errors

    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    doc = json.loads(lines[-1]) if lines else {}
    if res.returncode == 0 and "arena_bytes" in doc:
        return int(doc["arena_bytes"])
    if "error" in doc:
        cls = getattr(errors, doc["error"]["type"], RuntimeBackendError)
        raise cls(doc["error"]["problem"], path=where, fix=doc["error"]["fix"])
    how = f"crashed with {signal.Signals(-res.returncode).name}" if res.returncode < 0 else f"exited {res.returncode}"
    raise RuntimeBackendError(
        f"the TFLM interpreter {how} while allocating the model ({res.stderr.strip()[-200:]})",
        path=where,
        fix="this graph does not run under TFLM; check it runs in LiteRT, re-export",
    )


def _measure_arena_here(tflite: bytes | str | Path) -> int:
    """The smallest tensor arena, in bytes, with which TFLM allocates and runs the model.

    Method: the arena is what ``MicroInterpreter::AllocateTensors()`` needs (every kernel asks for
    its scratch in Prepare, and Invoke allocates nothing), so the interpreter is built with a given
    ``arena_size`` and either succeeds or fails. Doubling from 64 KiB finds a size that succeeds,
    then a binary search to the byte finds the smallest; one invoke at that size confirms it. This
    needs no parsing of ``print_allocations`` output (whose "Requested" figure is only the
    allocation that failed, not the total). The figure is for TFLM's reference kernels as the
    ``tflite-micro`` host build uses them; the arena is allocated 16-byte aligned on the host,
    as ``alignas(16)`` does on the device.

    Raises:
        UnsupportedError: the model cannot run under TFLM (checked first, see :func:`check_tflm`).
        RuntimeBackendError: TFLM fails to allocate even with 1 GiB (the log is in the message).
    """
    where = None if isinstance(tflite, (bytes, bytearray)) else tflite
    data = model_bytes(tflite)
    lo, hi = 0, 64 * 1024  # lo fails (or is 0), hi is being searched for success
    while True:
        interp, log = _interpreter(data, hi)
        if interp is not None:
            break
        if hi >= _ARENA_CAP:
            raise RuntimeBackendError(
                "TFLM could not allocate the model even with a 1 GiB arena: " + " | ".join(log[-3:]),
                path=where,
                fix="check the file runs in LiteRT; report the TFLM log above",
            )
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _interpreter(data, mid)[0] is not None:
            hi = mid
        else:
            lo = mid
    session = TFLMSession(_interpreter(data, hi)[0], hi)
    session.run(np.zeros((1, *session.input_spec.shape[1:]), np.float32))  # raises if Invoke fails
    return hi


class TFLMSession:
    """A model loaded in the TFLM host interpreter (real TFLM kernels), batch 1 at a time.

    Implements :class:`edgetransfer.runtime.base.Session`: ``run`` takes [0, 255] RGB NHWC
    float32 images, quantizes them as :func:`quantize_input` does and returns float32
    probabilities (the output dequantized).
    """

    def __init__(self, interp, arena_bytes: int | None = None):
        self.interp = interp
        self.arena_bytes = arena_bytes
        inp, out = interp.get_input_details(0), interp.get_output_details(0)
        q_in, q_out = inp["quantization_parameters"], out["quantization_parameters"]
        scale = float(q_in["scales"][0]) if len(q_in["scales"]) else None
        self.input_spec = InputSpec(
            tuple(int(d) for d in inp["shape"]),
            np.dtype(inp["dtype"]).name,
            "NHWC",
            scale,
            int(q_in["zero_points"][0]) if scale else None,
        )
        self._out_scale = float(q_out["scales"][0]) if len(q_out["scales"]) else None
        self._out_zp = int(q_out["zero_points"][0]) if self._out_scale else 0

    @classmethod
    def load(cls, path: str | Path, arena_bytes: int | None = None) -> TFLMSession:
        """Check ``path`` (:func:`check_tflm`) and load it with ``arena_bytes`` (default: measured)."""
        data = require_file(path).read_bytes()
        check_tflm(data, path=path)
        arena = measure_arena(data) if arena_bytes is None else arena_bytes
        interp, log = _interpreter(data, arena)
        if interp is None:
            raise RuntimeBackendError(
                f"TFLM could not allocate the model in {arena} bytes: " + " | ".join(log[-2:]),
                path=path,
                fix="give a larger arena (see measure_arena)",
            )
        return cls(interp, arena)

    def run(self, batch: np.ndarray) -> np.ndarray:
        q = quantize_input(np.asarray(batch, np.float32), self.input_spec)
        outs = [np.zeros((0, 0), np.float32)] if not len(q) else []
        for image in q:
            self.interp.set_input(image[None], 0)
            self.interp.invoke()
            outs.append(np.array(self.interp.get_output(0)).reshape(1, -1))
        out = np.concatenate(outs).astype(np.float32)
        if self._out_scale:
            out = (out - self._out_zp) * self._out_scale
        return out.astype(np.float32)


class TFLM:
    """The TFLM host interpreter as a :class:`edgetransfer.runtime.base.Runtime`."""

    name = "tflm"
    formats = ("tflite",)

    def version(self) -> str:
        _runtime()
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"tflite-micro {version('tflite-micro')}"
        except PackageNotFoundError:
            return "tflite-micro ?"

    def load(self, path: str | Path, threads: int | None = None) -> TFLMSession:
        """``threads`` is ignored: TFLM is single-threaded."""
        return TFLMSession.load(path)


# --------------------------------------------------------------------------- budgets and latency


def estimate_latency(tflite_path: str | Path, profile):
    """Estimated latency of a full-int8 file on a ``runtime: tflm`` profile (labelled ``estimated``).

    Reuses :func:`edgetransfer.runtime.latency.estimate`, whose ``Device`` schema fits a microcontroller:
    the profile's ``device.peak_gmacs.int8`` is ``clock_mhz x int8 MACs/cycle / 1000``, so each
    op costs ``max(MACs / (clock x MACs_per_cycle x efficiency[kind]), bytes / memory_gbps)``
    plus ``per_op_us``, summed with ``fixed_ms``.
    """
    from ..exporter.formats import graphops
    from . import latency

    if profile.device is None:
        raise ConfigError(
            f"target {profile.name} has no 'device' section",
            path=profile.path or None,
            fix="add device: {peak_gmacs: {int8: ...}, memory_gbps: ..., efficiency: ...}",
        )
    est = latency.estimate(graphops.tflite_ops(tflite_path), profile.device, "int8")
    clock = profile.clock_mhz
    detail = {
        **est.detail,
        "clock_mhz": clock,
        "formula": "sum over ops of max(MACs / (peak x efficiency), "
        "bytes / bandwidth) + per_op_us; peak = clock_mhz x MACs/cycle",
    }
    if clock:
        detail["int8_macs_per_cycle"] = round(float(profile.device.peak_gmacs["int8"]) * 1e3 / clock, 3)
    return replace(est, detail=detail)


def fits(arena_bytes: int, flash_bytes: int, profile) -> dict:
    """Whether the arena and the model fit the part and its budgets, and where the arena would live.

    The arena must be one block: it goes in SRAM when it fits ``memory.arena_max_kb`` (default
    ``sram_kb``), else in PSRAM when the part has enough, else nowhere. Budgets ``ram_kb`` /
    ``flash_kb`` default to the part's memory (SRAM + PSRAM, flash).
    """
    mem = profile.memory
    if mem is None:
        raise ConfigError(
            f"target {profile.name} has no 'memory' section",
            path=profile.path or None,
            fix="add memory: {sram_kb: ..., flash_kb: ..., psram_kb: ...}",
        )
    kib = 1024
    arena_in = (
        "sram"
        if arena_bytes <= (mem.arena_max_kb or mem.sram_kb) * kib
        else "psram"
        if arena_bytes <= mem.psram_kb * kib
        else None
    )
    ram_budget = int((profile.budgets.ram_kb or mem.sram_kb + mem.psram_kb) * kib)
    flash_budget = int(min(profile.budgets.flash_kb or mem.flash_kb, mem.flash_kb) * kib)
    ram_ok = arena_in is not None and arena_bytes <= ram_budget
    flash_ok = flash_bytes <= flash_budget
    return {
        "target": profile.name,
        "arena_bytes": int(arena_bytes),
        "flash_bytes": int(flash_bytes),
        "arena_in": arena_in,
        "ram_budget_bytes": ram_budget,
        "flash_budget_bytes": flash_budget,
        "ram_ok": ram_ok,
        "flash_ok": flash_ok,
        "fits": ram_ok and flash_ok,
    }


def memory_fit(path: str | Path, size_bytes: int, profile) -> dict:
    """The runtime registry's memory measurement (``RuntimeSpec.memory``): the op check, the
    arena measured by TFLM, and :func:`fits` with the file's ``size_bytes`` as flash."""
    require_tflm_ops(path)
    return fits(measure_arena(path), size_bytes, profile)


def _main(argv: list[str]) -> int:
    """``python -m edgetransfer.runtime.tflm arena MODEL``: the child of :func:`measure_arena`."""
    from ..errors import EdgeTransferError

    try:
        print(json.dumps({"arena_bytes": _measure_arena_here(Path(argv[1]))}))
    except EdgeTransferError as exc:
        err = {"type": type(exc).__name__, "problem": exc.problem, "fix": exc.fix}
        print(json.dumps({"error": err}))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
