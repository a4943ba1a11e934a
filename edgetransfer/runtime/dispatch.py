"""Calls through the runtime registry: a file's delegation observed here, a file's per-op profile.

These read :mod:`.spec` (which runtime, which hook) and call the hook (:mod:`.hooks`); the modules the hooks
import (:mod:`.delegation`, :mod:`.profile`, :mod:`.tflm`) never read the registry themselves, so the
registry can name typed functions without an import cycle.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..errors import ConfigError, EdgeTransferError
from ..exporter import formats
from ..records.delegation import Delegation
from ..records.profile import OpProfile
from . import spec as runtime_spec
from .base import require_file

log = logging.getLogger("edgetransfer")


def observe(path: str | Path, runtime: str, provider: str = "cpu", threads: int | None = None) -> Delegation | None:
    """How ``runtime`` (a registry name) delegated ``path`` when loaded here, or None where it has no observer."""
    spec = runtime_spec.get(runtime)
    if spec.observer is None:
        return None
    return spec.observer(Path(path), provider, threads)


def observe_here(
    path: str | Path, integer: bool, runtime: str | None = None, provider: str = "cpu", threads: int | None = None
) -> Delegation | None:
    """How ``runtime`` (default the file's own) delegated ``path`` when loaded on this host; None where it
    has no observer or cannot say (logged: a failed observation never fails a measurement). ``integer``: the
    file is of an integer precision; the float ops of a float file are dropped, they are the point of it."""
    from . import runtime_for  # the package's face imports this module's neighbours: called, not loaded

    name = runtime or runtime_for(path).name
    try:
        found = observe(path, name, provider, threads)
    except (EdgeTransferError, RuntimeError, ValueError, KeyError, OSError) as exc:  # native runtimes raise these
        log.warning("note: delegation of %s in %s not observed (%s)", Path(path).name, name, str(exc)[:200])
        return None
    if found is not None and not integer:
        found = dataclasses.replace(found, float_ops=None, float_op_types=())
    return found


def profile(
    path: str | Path,
    runtime_name: str,
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 5,
    settings: dict | None = None,
) -> OpProfile:
    """Per-op mean time of ``path`` on ``runtime_name``, by the runtime's registered profiler
    (:attr:`~.spec.RuntimeSpec.profiler`).

    ``settings`` are the runtime's own (see :func:`.profile.ort_session`, :func:`.profile.ov_compile`), e.g. a
    :func:`edgetransfer.runtime.tune.tune` winner's. LiteRT answers ``supported=False``.

    Raises:
        ConfigError: an unknown runtime, or a file the runtime does not read.
        RuntimeBackendError: the runtime cannot load the file.
    """

    path = require_file(path)
    rt = runtime_spec.get(runtime_name)
    fmt = formats.for_path(path)
    if runtime_name not in fmt.runtimes or not rt.profiler:
        can = " or ".join(r for r in fmt.runtimes if runtime_spec.get(r).profiler) or "a host runtime"
        raise ConfigError(
            f"no per-op profile of a {path.suffix} file on {runtime_name!r}", path=path, fix=f"profile it on {can}"
        )
    return rt.profile(path, threads, runs, warmup, settings)
