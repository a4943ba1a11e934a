"""What each runtime is and can measure: the runtime registry's capabilities.

A target profile names a runtime (``runtime: litert``); evaluation and the gate ask its
:class:`RuntimeSpec` what to do (measure latency here or estimate it, measure memory, refuse
unsupported ops first, score accuracy in its own kernels) and never compare runtime names.

Adding a runtime: one module in ``runtime/`` with a class satisfying :class:`~.base.Runtime`,
and one :func:`register` call in ``_SPECS`` below naming it and its capabilities.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# What a runtime can measure (``RuntimeSpec.measures``).
LATENCY, MEMORY, PROFILE = "latency", "memory", "profile"
HOST, MCU = "host", "mcu"  # RuntimeSpec.kind


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime and its capabilities.

    Attributes:
        name: the profile's ``runtime:`` name.
        kind: ``host`` (runs on this machine's CPU, timed here) or ``mcu`` (a microcontroller's
            kernels run on the host for accuracy and memory; latency is estimated).
        factory: ``module:Class`` of the runtime (imported on first use).
        modules: importable modules it needs (the first installed one is used).
        measures: what it measures here: ``latency``, ``memory`` (the arena), ``profile`` (per op).
        own_accuracy: accuracy on its targets is scored in its own kernels (TFLM), not the
            file's default runtime.
        providers: execution providers it takes besides ``cpu``.
        ops: ``module:function(path)`` that refuses a file using ops it lacks (exit 2), or ``""``.
        memory: ``module:function(path, size_bytes, target) -> dict`` (arena, flash, fits), or ``""``.
        estimate: ``module:function(path, target) -> Latency`` for ``kind == mcu``, or ``""``.
        title: the name people write (``ONNX Runtime``), for messages; defaults to :attr:`name`.
    """

    name: str
    kind: str
    factory: str
    modules: tuple[str, ...]
    measures: frozenset[str] = frozenset({LATENCY})
    own_accuracy: bool = False
    providers: tuple[str, ...] = ()
    ops: str = ""
    memory: str = ""
    estimate: str = ""
    formats: tuple[str, ...] = ()  # the only formats it runs (empty: whatever the format registry says)
    precisions: tuple[str, ...] = ()  # the only precisions it runs (empty: any)
    title: str = ""

    def runtime(self, provider: str = "cpu") -> Any:
        """An instance of the runtime (``provider`` only where :attr:`providers` has it)."""
        cls = _resolve(self.factory)
        if self.providers:
            return cls(provider)  # the runtime refuses a provider it does not know, naming the ones it does
        if provider != "cpu":
            takes = [s for s in _SPECS.values() if provider in s.providers]
            title = " or ".join(s.title or s.name for s in takes) or "no runtime's"
            article = "an " if title[0].lower() in "aeiou" else "a "
            raise ConfigError(
                f"provider {provider!r} is {article}{title} setting; {self.name} runs on the CPU here",
                fix="drop the provider" + "".join(f", or use runtime: {s.name}" for s in takes),
            )
        return cls()

    def installed(self) -> bool:
        """Whether one of :attr:`modules` is installed, without importing it."""
        for mod in self.modules:
            try:
                if importlib.util.find_spec(mod) is not None:
                    return True
            except (ImportError, ValueError):  # a parent package missing or half-installed
                continue
        return False

    @property
    def measures_latency_here(self) -> bool:
        return LATENCY in self.measures

    def require_supported(self, path: str | Path) -> None:
        """Refuse a file using ops this runtime lacks, before anything runs (no-op when it takes all)."""
        if self.ops:
            _resolve(self.ops)(path)

    def measure_memory(self, path: str | Path, size_bytes: int, target: Any) -> dict | None:
        """Arena (RAM) and flash of ``path`` on ``target``, with whether they fit; ``None`` when not measured."""
        return _resolve(self.memory)(path, size_bytes, target) if MEMORY in self.measures else None

    def estimate_latency(self, path: str | Path, target: Any) -> Any:
        """The runtime's own latency estimate (``estimated``), for runtimes that do not time here."""
        if not self.estimate:
            raise ConfigError(f"runtime {self.name} has no latency estimate", fix="use measure: host")
        return _resolve(self.estimate)(path, target)


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_SPECS: dict[str, RuntimeSpec] = {}


def register(spec: RuntimeSpec) -> RuntimeSpec:
    if spec.name in _SPECS and _SPECS[spec.name] != spec:
        raise ValueError(f"runtime {spec.name!r} registered twice")
    _SPECS[spec.name] = spec
    return spec


register(
    RuntimeSpec(
        "litert",
        HOST,
        "edgetransfer.runtime.litert:LiteRT",
        # the interpreter modules LiteRT loads, in its order (runtime/litert.py _CANDIDATES)
        ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"),
        frozenset({LATENCY}),
        title="LiteRT",
    )
)
register(
    RuntimeSpec(
        "onnxruntime",
        HOST,
        "edgetransfer.runtime.onnxrt:OnnxRuntime",
        ("onnxruntime",),
        frozenset({LATENCY}),
        providers=("cuda", "coreml", "nnapi", "qnn", "tensorrt", "openvino", "dml"),
        title="ONNX Runtime",
    )
)
register(
    RuntimeSpec(
        "openvino",
        HOST,
        "edgetransfer.runtime.openvino:OpenVINO",
        ("openvino",),
        frozenset({LATENCY}),
        title="OpenVINO",
    )
)
register(
    RuntimeSpec(
        "tflm",
        MCU,
        "edgetransfer.runtime.tflm:TFLM",
        ("tflite_micro",),
        frozenset({MEMORY}),
        own_accuracy=True,
        ops="edgetransfer.runtime.tflm:require_tflm_ops",
        memory="edgetransfer.runtime.tflm:memory_fit",
        estimate="edgetransfer.runtime.tflm:estimate_latency",
        title="TFLM",
        formats=("tflite",),
        precisions=("int8",),
    )
)


def names() -> tuple[str, ...]:
    return tuple(_SPECS)


def get(name: str) -> RuntimeSpec:
    """The spec of ``name``; an unknown one names the known ones."""
    if name not in _SPECS:
        close = difflib.get_close_matches(name, _SPECS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown runtime {name!r}", fix=f"{hint}use one of {', '.join(_SPECS)}")
    return _SPECS[name]
