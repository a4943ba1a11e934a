"""Probe a model file in a child process before loading it in this one.

LiteRT and ONNX Runtime are native code, and hostile or damaged files still break them: a
``.tflite`` three bytes away from a good one aborts the process with "double free or
corruption". :func:`probe` loads the file and runs one inference in a child process
(``python -m edgetransfer.runtime.isolate PATH``) under an address-space limit
(``setrlimit(RLIMIT_AS)``, see getrlimit(2)), no core dumps, and a timeout. A signal, a
timeout or running out of memory there becomes a :class:`RuntimeBackendError` here; an
:class:`EdgeTransferError` raised in the child is raised here with the same class and exit code.

Results are cached per ``(path, sha256)`` for the life of the process, so a file validated
against many targets is probed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .. import errors
from ..errors import EdgeTransferError, RuntimeBackendError

_MARK = "EDGETRANSFER-PROBE "  # prefix of the child's report lines on stdout; native logs are ignored
_RUNTIMES = {".tflite": "LiteRT", ".onnx": "ONNX Runtime"}
_MAX_INPUT_ELEMENTS = 64_000_000  # a [1, 4096, 4096, 3] batch; a mutated header may claim far more
_cache: dict[tuple[str, str, int], EdgeTransferError | None] = {}
_cache_lock = threading.Lock()


def probe(path: str | Path, *, timeout_s: float = 60, memory_mb: int = 4096) -> None:
    """Load ``path`` as a :class:`~edgetransfer.runtime.Classifier` (runtime session and the
    metadata edgetransfer wrote) and classify one random image, in a child process; return if that works.

    Args:
        path: a ``.tflite`` or ``.onnx`` file.
        timeout_s: wall-clock limit for the child (load and one inference).
        memory_mb: the child's address-space limit (``RLIMIT_AS``).

    Raises:
        RuntimeBackendError: the runtime crashed (a signal), hung, ran out of memory, or failed.
        EdgeTransferError: whatever the child raised (same class, same exit code), e.g. a
            ConfigError for a file that is no model.
    """
    path = Path(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise RuntimeBackendError(
            f"cannot read the model ({exc.strerror or exc})",
            path=path,
            fix="check the path (see the export manifest.json)",
        ) from None
    # The limit is part of the key: a file that fails under a small limit may load under a larger one.
    key = (str(path.resolve()), digest, int(memory_mb))
    with _cache_lock:
        if key in _cache:
            cached = _cache[key]
            if cached is None:
                return
            raise _copy(cached)
    error = _run_child(path, timeout_s, memory_mb)
    if error is not None and getattr(error, "_transient", False):
        raise error  # a timeout may be load, not the file: probe again next time
    with _cache_lock:
        _cache[key] = error
    if error is not None:
        raise _copy(error)


def clear_cache() -> None:
    """Forget every probe result (tests, or a long-lived process that rewrites files in place)."""
    with _cache_lock:
        _cache.clear()


def _copy(exc: EdgeTransferError) -> EdgeTransferError:
    new = type(exc)(exc.problem, path=exc.path, fix=exc.fix)
    new.exit_code = exc.exit_code
    return new


def _child_env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this edgetransfer package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run_child(path: Path, timeout_s: float, memory_mb: int) -> EdgeTransferError | None:
    runtime = _RUNTIMES.get(path.suffix, "the runtime")
    cmd = [sys.executable, "-m", "edgetransfer.runtime.probe_child", str(path), "--memory-mb", str(int(memory_mb))]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=_child_env(),
        start_new_session=True,
    )  # own group: a timeout kills it all
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        phase = _phase(out)
        exc = RuntimeBackendError(
            f"{runtime} did not finish {phase} within {timeout_s:g} s (killed)",
            path=path,
            fix="the file may be corrupt or crafted to hang the runtime; re-export it, or "
            "raise the timeout if the machine is busy",
        )
        exc._transient = True  # type: ignore[attr-defined]
        return exc
    reports = _reports(out)
    phase = _phase(out)
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        memory = _looks_like_oom(err)
        what = (
            f"ran out of its {memory_mb} MB memory limit and was killed by {name} while {phase}"
            if memory
            else f"crashed with {name} while {phase}"
        )
        return RuntimeBackendError(f"{runtime} {what}", path=path, fix=_CRASH_FIX)
    done = [r for r in reports if "ok" in r or "error" in r]
    if done and done[-1].get("ok"):
        return None
    if done:
        return _rebuild(done[-1]["error"], path)
    tail = " ".join(err.decode("utf-8", "replace").split())[-300:]
    memory = _looks_like_oom(err)
    return RuntimeBackendError(
        f"{runtime} {'ran out of its ' + str(memory_mb) + ' MB memory limit' if memory else 'failed'} while {phase} "
        f"(probe exited with status {proc.returncode}: {tail or 'no message'})",
        path=path,
        fix=_CRASH_FIX,
    )


_CRASH_FIX = (
    "the file is corrupt or crafted; re-export it from the training run, and do not load it in a process "
    "you care about"
)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _looks_like_oom(stderr: bytes) -> bool:
    text = stderr.decode("utf-8", "replace")
    return any(
        s in text
        for s in ("bad_alloc", "MemoryError", "Cannot allocate memory", "out of memory", "Failed to allocate")
    )


def _reports(stdout: bytes) -> list[dict]:
    out = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(_MARK):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line[len(_MARK) :]))
    return out


def _phase(stdout: bytes) -> str:
    phases = [r["phase"] for r in _reports(stdout) if "phase" in r]
    return phases[-1] if phases else "starting"


def _rebuild(info: dict, path: Path) -> EdgeTransferError:
    cls = getattr(errors, str(info.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, EdgeTransferError)):
        cls = EdgeTransferError
    exc = cls(str(info.get("problem", "probe failed")), path=info.get("path") or path, fix=info.get("fix"))
    if isinstance(info.get("exit_code"), int) and info["exit_code"] != exc.exit_code:
        exc.exit_code = info["exit_code"]
    return exc
