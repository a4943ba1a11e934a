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
from dataclasses import dataclass, field
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
        profiler: ``module:function(path, threads, runs, warmup, settings) -> OpProfile`` giving per-op
            times (``profile`` in :attr:`measures`), or one saying why there are none.
        default_settings: the settings ``load`` uses when given none (the "before tuning" figure).
        tune_candidates: settings ``validate --tune`` tries besides the thread count, in the runtime's own
            keys (``load(path, threads, settings)`` takes them back).
        bf16: the settings that run an fp32 file in bf16 where the CPU has bf16 units (empty: never).
        observer: ``module:function(path, provider, threads) -> Delegation``: how the runtime delegated a
            file it loaded here (:mod:`edgetransfer.runtime.delegation`), or ``""`` where it cannot say.
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
    profiler: str = ""
    default_settings: dict = field(default_factory=dict, hash=False)
    tune_candidates: tuple[dict, ...] = field(default=(), hash=False)
    bf16: dict = field(default_factory=dict, hash=False)
    observer: str = ""

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

    @property
    def profiles(self) -> bool:
        """Whether it gives per-op times here (otherwise :meth:`profile` says why not)."""
        return PROFILE in self.measures

    def profile(self, path: str | Path, threads: int | None, runs: int, warmup: int, settings: dict | None) -> Any:
        """Per-op profile of ``path`` (an :class:`~edgetransfer.records.profile.OpProfile`)."""
        if not self.profiler:
            raise ConfigError(f"runtime {self.name} has no per-op profiler", fix="profile on a host runtime")
        return _resolve(self.profiler)(path, threads, runs, warmup, settings)

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
        # the Python Interpreter has no op profiler: the profiler says so (profile.LITERT_REASON)
        profiler="edgetransfer.runtime.profile:profile_litert",
        default_settings={"op_resolver": "xnnpack"},
        # XNNPACK (the default delegate) or the builtin kernels (OpResolverType.
        # BUILTIN_WITHOUT_DEFAULT_DELEGATES), the only kernel switch the Python Interpreter exposes;
        # XNNPACK flags and its weight cache are options of the CompiledModel API (runtime/tune.py says why not)
        tune_candidates=({"op_resolver": "xnnpack"}, {"op_resolver": "builtin"}),
        observer="edgetransfer.runtime.delegation:observe_litert",
    )
)
register(
    RuntimeSpec(
        "onnxruntime",
        HOST,
        "edgetransfer.runtime.onnxrt:OnnxRuntime",
        ("onnxruntime",),
        frozenset({LATENCY, PROFILE}),
        providers=("cuda", "coreml", "nnapi", "qnn", "tensorrt", "openvino", "dml"),
        title="ONNX Runtime",
        profiler="edgetransfer.runtime.profile:profile_ort",
        default_settings={"graph_optimization_level": "all"},
        # graph optimisation level x whether idle intra-op threads spin
        # (onnxruntime_session_options_config_keys.h, "session.intra_op.allow_spinning")
        tune_candidates=tuple(
            {"graph_optimization_level": level, "allow_spinning": spin}
            for level in ("all", "extended", "basic")
            for spin in (True, False)
        ),
        observer="edgetransfer.runtime.delegation:observe_ort",
    )
)
register(
    RuntimeSpec(
        "openvino",
        HOST,
        "edgetransfer.runtime.openvino:OpenVINO",
        ("openvino",),
        frozenset({LATENCY, PROFILE}),
        title="OpenVINO",
        profiler="edgetransfer.runtime.profile:profile_ov",
        default_settings={"PERFORMANCE_HINT": "LATENCY"},
        # the LATENCY hint with its own stream count or one stream, and thread pinning
        # (docs.openvino.ai, "CPU Device" properties)
        tune_candidates=(
            {"PERFORMANCE_HINT": "LATENCY"},
            {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1},
            {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False},
            {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": True},
        ),
        # the CPU plugin computes in bf16 on AVX512-BF16 / AMX when asked (docs.openvino.ai, "CPU Device",
        # Inference Precision); load() pins f32 otherwise
        bf16={"INFERENCE_PRECISION_HINT": "bf16"},
        observer="edgetransfer.runtime.delegation:observe_openvino",
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


# More threads than any CPU edgetransfer runs on has: a recorded figure above is not a setting.
MAX_THREADS = 1024


def check_settings(name: str, settings: dict, where: str) -> dict:
    """``settings`` recorded for runtime ``name`` (a report read by ``--settings-from``), checked before
    a runtime is loaded with them: ``threads`` a whole number from 1 to :data:`MAX_THREADS`, every other
    key one the runtime declares (its defaults, tuning candidates or bf16 switch) with one of its values.

    Raises:
        ConfigError: names the key, the value and what is allowed (issue 37: ``threads: "four"`` was
            an internal error, ``threads: 1000000000`` or ``2.5`` were used as given).
    """
    spec = get(name)
    allowed: dict[str, list] = {}
    for options in (spec.default_settings, *spec.tune_candidates, spec.bf16):
        for key, value in options.items():
            allowed.setdefault(key, []).append(value)
    for key, value in settings.items():
        if key == "threads":
            ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THREADS
            wanted = f"a whole number from 1 to {MAX_THREADS}"
        else:
            ok = key in allowed and any(type(value) is type(v) and value == v for v in allowed[key])
            wanted = f"one of {sorted(map(repr, dict.fromkeys(allowed[key])))}" if key in allowed else ""
        if not ok:
            what = f"{key} {value!r} is not {wanted}" if wanted else f"{key!r} is not a setting of {name}"
            raise ConfigError(
                f"{where}: {what}",
                fix="pass a report written by `validate --tune` unedited (or drop --settings-from)",
            )
    return settings
