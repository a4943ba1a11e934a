"""The child side of :func:`edgetransfer.runtime.isolate.probe`: ``python -m
edgetransfer.runtime.probe_child PATH [--memory-mb N]`` loads the file as a ``Classifier`` under an
address-space limit and reports on stdout. A module of its own, run only as a process, so the
parent side (``isolate``) never imports the ``Classifier`` it protects."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import errors
from ..errors import EdgeTransferError, RuntimeBackendError
from .isolate import _CRASH_FIX, _MARK, _MAX_INPUT_ELEMENTS, _RUNTIMES, _looks_like_oom


def _say(**report) -> None:
    print(_MARK + json.dumps(report), flush=True)


def _limit(memory_mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash here must not write a core file
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _child(path: str, memory_mb: int) -> int:
    _limit(memory_mb)
    try:
        _say(phase="importing")
        import numpy as np

        from . import Classifier
        from .base import require_finite

        _say(phase="loading")
        # Classifier, not just load_session: its metadata reading (labels, size, resize policy) is
        # parsed from the same untrusted file and must not fail in the parent either.
        clf = Classifier(path, threads=1, safe=False)  # this is the probe
        size = int(clf.size)
        if not 0 < size * size * 3 <= _MAX_INPUT_ELEMENTS:
            raise RuntimeBackendError(
                f"the model's input shape {clf.session.input_spec.shape} is not a plausible image batch",
                path=path,
                fix="re-export the model",
            )
        image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        _say(phase="running")
        probs = require_finite(clf.probabilities(image), path)
        clf.classify(image, top=len(probs))
    except EdgeTransferError as exc:
        if _looks_like_oom(exc.problem.encode()) or "failed to map segment" in exc.problem:
            # a shared library that cannot be mapped under RLIMIT_AS reads as "not installed"
            _say(
                error={
                    "class": "RuntimeBackendError",
                    "path": path,
                    "fix": "raise memory_mb",
                    "problem": f"ran out of the {memory_mb} MB memory limit while importing the runtime "
                    f"({exc.problem[:200]})",
                }
            )
            return errors.EXIT_TOOLCHAIN
        _say(
            error={
                "class": type(exc).__name__,
                "problem": exc.problem,
                "path": exc.path,
                "fix": exc.fix,
                "exit_code": exc.exit_code,
            }
        )
        return exc.exit_code
    except MemoryError:
        raise  # -> exit 1 with "MemoryError" on stderr, reported as out of memory
    except Exception as exc:  # noqa: BLE001 - a runtime error our wrappers do not translate yet
        _say(
            error={
                "class": "RuntimeBackendError",
                "path": path,
                "fix": _CRASH_FIX,
                "problem": f"{_RUNTIMES.get(Path(path).suffix, 'the runtime')} failed ({type(exc).__name__}: "
                f"{str(exc)[:300]})",
            }
        )
        return errors.EXIT_TOOLCHAIN
    _say(ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edgetransfer.runtime.probe_child PATH [--memory-mb N]``: the child side of :func:`probe`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgetransfer.runtime.probe_child")
    ap.add_argument("path")
    ap.add_argument("--memory-mb", type=int, default=4096)
    args = ap.parse_args(argv)
    return _child(args.path, args.memory_mb)


if __name__ == "__main__":
    sys.exit(main())
