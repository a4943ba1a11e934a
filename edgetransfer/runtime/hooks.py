"""The hooks a runtime gives its registry entry (:class:`~.spec.RuntimeSpec`), as Protocols mypy checks.

A hook is a plain function here that imports its runtime's module when first called, so the registry
(and ``import edgetransfer.runtime``) loads no runtime, TensorFlow or OpenVINO; mypy checks both that each
function fits its Protocol and that it calls the runtime's function with the right arguments (the shape
of ai-edge-quantizer's ``algorithm_manager_api`` Protocols, with the lazy import of a ``module:function``
string kept inside the function).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..records.delegation import Delegation
    from ..records.latency import Latency
    from ..records.profile import OpProfile


class OpsCheck(Protocol):
    """Refuse a file using ops the runtime lacks (exit 2), before anything runs."""

    def __call__(self, path: str | Path) -> None: ...


class MemoryMeasure(Protocol):
    """Arena (RAM) and flash of a file on a target, and whether they fit (a ``MemoryFit``'s keys)."""

    def __call__(self, path: str | Path, size_bytes: int, target: Any) -> dict: ...


class LatencyEstimate(Protocol):
    """The runtime's own latency estimate (``estimated``) on a target it does not time here."""

    def __call__(self, path: str | Path, target: Any) -> Latency: ...


class Profiler(Protocol):
    """Per-op times of a file (or an :class:`OpProfile` saying why there are none)."""

    def __call__(
        self, path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None
    ) -> OpProfile: ...


class Observer(Protocol):
    """How the runtime delegated a file it loaded on this host."""

    def __call__(self, path: Path, provider: str, threads: int | None) -> Delegation | None: ...


# -- TFLM (runtime/tflm.py)


def tflm_ops(path: str | Path) -> None:
    from .tflm import require_tflm_ops

    require_tflm_ops(path)


def tflm_memory(path: str | Path, size_bytes: int, target: Any) -> dict:
    from .tflm import memory_fit

    return memory_fit(path, size_bytes, target)


def tflm_estimate(path: str | Path, target: Any) -> Latency:
    from .tflm import estimate_latency

    lat: Latency = estimate_latency(path, target)
    return lat


# -- per-op profilers (runtime/profile.py)


def profile_litert(path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> OpProfile:
    from .profile import profile_litert as run

    return run(path, threads, runs, warmup, settings)


def profile_ort(path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> OpProfile:
    from .profile import profile_ort as run

    return run(path, threads, runs, warmup, settings)


def profile_ov(path: Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> OpProfile:
    from .profile import profile_ov as run

    return run(path, threads, runs, warmup, settings)


# -- delegation observers (runtime/delegation.py)


def observe_litert(path: Path, provider: str, threads: int | None) -> Delegation | None:
    from .delegation import observe_litert as run

    return run(path, provider, threads)


def observe_ort(path: Path, provider: str, threads: int | None) -> Delegation | None:
    from .delegation import observe_ort as run

    return run(path, provider, threads)


def observe_openvino(path: Path, provider: str, threads: int | None) -> Delegation | None:
    from .delegation import observe_openvino as run

    return run(path, provider, threads)
