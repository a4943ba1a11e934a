"""Runtime settings tuned per target: try the candidates interleaved, keep the fastest, say by how much.

``tune(path, runtime_name, threads_candidates)`` loads one session per candidate setting, then times
them round-robin (a few runs of each in turn, for ``budget_s``), so a burst of load on a shared machine
hits every candidate alike, and returns a :class:`TuneResult`: the winner's settings (in the runtime's
own names, which :func:`runner` and :func:`edgetransfer.runtime.dispatch.profile` take back), its median,
and every trial. ``bf16_check(path)`` measures OpenVINO's bf16 execution against f32 on the same file.
Needs no TensorFlow.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .. import _lazy
from ..errors import ConfigError
from . import spec as runtime_spec
from .base import require_file
from .profile import _ov_feed, ov_compile

# Candidate settings per runtime, beside the thread count, and what load() uses when given none (the
# "before tuning" figure): the runtime registry's capabilities (RuntimeSpec.tune_candidates and
# .default_settings in runtime/spec.py, which cites where each comes from). XNNPACK flags, YNNPACK and
# the XNNPACK weight cache are options of LiteRT's CompiledModel API (ai_edge_litert.cpu_options.CpuOptions),
# whose from_file fails here on every file, ours and default options alike (ai_edge_litert 2.3.0:
# CreateCompiledModelFromFile RuntimeError), so they are not candidates yet.
CANDIDATES: dict[str, list[dict]] = {
    n: [dict(c) for c in runtime_spec.get(n).tune_candidates]
    for n in runtime_spec.names()
    if runtime_spec.get(n).tune_candidates
}
DEFAULTS: dict[str, dict] = {n: dict(runtime_spec.get(n).default_settings) for n in CANDIDATES}
# Seconds between two candidates' runs: ONNX Runtime's spinning workers and OpenVINO's stream threads
# keep a core busy for a moment after a run; without a gap they would slow the next candidate down.
GAP_S = 0.005


@dataclass(frozen=True)
class Trial:
    """One candidate: its settings (threads included) and its timed runs' median, in ms."""

    settings: dict
    p50_ms: float
    runs: int

    @property
    def threads(self) -> int | None:
        t = self.settings.get("threads")
        return int(t) if t else None


@dataclass(frozen=True)
class TuneResult:
    """The winning settings of a file on a runtime, with the figure, the default's and every trial."""

    model: str
    runtime: str
    settings: dict
    p50_ms: float
    default_settings: dict
    default_p50_ms: float | None
    trials: tuple[Trial, ...]
    rounds: int
    kind: str = "tune_result"
    schema: int = 1

    @property
    def speedup(self) -> float | None:
        """Default median over the winner's (1.0: the default won, or equals it)."""
        return self.default_p50_ms / self.p50_ms if self.default_p50_ms and self.p50_ms else None

    def to_json(self) -> dict:
        d = asdict(self)
        d["speedup"] = self.speedup
        return d

    @classmethod
    def from_json(cls, d: dict) -> TuneResult:
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        fields["trials"] = tuple(Trial(**t) for t in d.get("trials", ()))
        return cls(**fields)

    def render(self) -> str:
        lines = [f"{Path(self.model).name} on {self.runtime}: {self.rounds} interleaved rounds"]
        for t in sorted(self.trials, key=lambda t: t.p50_ms):
            mark = "*" if t.settings == self.settings else " "
            lines.append(f" {mark} {t.p50_ms:8.3f} ms  {t.settings}")
        if self.speedup:
            lines.append(
                f"  winner {self.p50_ms:.3f} ms, {self.speedup:.2f}x the default ({self.default_p50_ms:.3f} ms)"
            )
        return "\n".join(lines)


def runner(path: str | Path, runtime_name: str, settings: dict | None = None) -> Callable[[], object]:
    """A no-argument callable running ``path`` once on a fixed random input with ``settings``
    (``threads`` and the runtime's own keys, as in :data:`CANDIDATES`), through the runtime's own
    ``load(path, threads, settings)`` and ``Session.run``: what ``validate`` times, so a tuned figure
    is the one a tuned measurement reproduces.

    Raises:
        ConfigError: an unknown runtime, or settings it does not take.
        RuntimeBackendError: the runtime cannot load the file.
    """
    path = require_file(path)
    settings = dict(settings or {})
    threads = settings.pop("threads", None)
    session = runtime_spec.get(runtime_name).runtime().load(path, threads, settings)
    size = session.input_spec.size
    batch = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    return partial(session.run, batch)


def interleave(runs: dict[str, Callable[[], object]], budget_s: float, per_turn: int = 3, min_rounds: int = 5):
    """``({key: [ms, ...]}, rounds)``: each callable run ``per_turn`` times in turn, in a fresh random
    order every round, until ``budget_s`` is spent (at least ``min_rounds``); each warmed up twice first."""
    for fn in runs.values():
        fn()
        fn()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    rng = random.Random(0)
    end = time.perf_counter() + budget_s
    rounds = 0
    while rounds < min_rounds or time.perf_counter() < end:
        rng.shuffle(order)
        for key in order:
            time.sleep(GAP_S)
            for _ in range(per_turn):
                t = time.perf_counter()
                runs[key]()
                samples[key].append((time.perf_counter() - t) * 1e3)
        rounds += 1
    return samples, rounds


def tune(
    path: str | Path,
    runtime_name: str,
    threads_candidates: tuple[int, ...] | list[int] = (1, 2),
    candidates: list[dict] | None = None,
    budget_s: float = 10.0,
) -> TuneResult:
    """The fastest of ``candidates`` (default :data:`CANDIDATES`) x ``threads_candidates`` for ``path``.

    The default setting (:data:`DEFAULTS`, what ``load`` uses) at the largest thread count is always
    among the trials, so the result says what tuning gained over it.

    Raises:
        ConfigError: an unknown runtime.
        RuntimeBackendError: the runtime cannot load the file.
    """
    if runtime_name not in CANDIDATES:
        raise ConfigError(f"no tuning for runtime {runtime_name!r}", fix=f"use one of {', '.join(CANDIDATES)}")
    base = candidates if candidates is not None else CANDIDATES[runtime_name]
    default = {**DEFAULTS[runtime_name], "threads": max(threads_candidates)}
    trials_settings = [{**c, "threads": t} for t in threads_candidates for c in base]
    if default not in trials_settings:
        trials_settings.append(default)
    keys = {repr(sorted(s.items(), key=str)): s for s in trials_settings}
    runs = {k: runner(path, runtime_name, s) for k, s in keys.items()}
    samples, rounds = interleave(runs, budget_s)
    trials = tuple(Trial(keys[k], float(np.median(v)), len(v)) for k, v in samples.items())
    best = min(trials, key=lambda t: t.p50_ms)
    default_p50 = next((t.p50_ms for t in trials if t.settings == default), None)
    return TuneResult(str(path), runtime_name, best.settings, best.p50_ms, default, default_p50, trials, rounds)


# --- bf16 --------------------------------------------------------------------------------------------


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The first CPU's flags in ``/proc/cpuinfo`` (empty where there is none: macOS, Windows)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    line = next((ln for ln in cpuinfo.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


def bf16_support(cpuinfo: str | None = None) -> dict[str, bool]:
    """Which bf16 units this CPU has: ``avx512_bf16`` (VDPBF16PS) and ``amx_bf16`` (AMX tiles)."""
    flags = cpu_flags(cpuinfo)
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


@dataclass(frozen=True)
class Bf16Check:
    """OpenVINO CPU on one fp32 ONNX file, f32 against bf16 execution: speed and how far outputs move."""

    model: str
    threads: int | None
    cpu: dict
    precision_read_back: str
    f32_p50_ms: float
    bf16_p50_ms: float
    max_abs_diff: float
    top1_agreement: float
    inputs: int
    kind: str = "bf16_check"
    schema: int = 1

    @property
    def speedup(self) -> float:
        return self.f32_p50_ms / self.bf16_p50_ms if self.bf16_p50_ms else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}


def bf16_check(path: str | Path, threads: int | None = None, inputs: int = 20, budget_s: float = 5.0) -> Bf16Check:
    """OpenVINO with ``INFERENCE_PRECISION_HINT`` f32 and bf16 on ``path``: interleaved medians, and the
    max abs difference of the outputs (and top-1 agreement) over ``inputs`` random [0, 255] images.

    The precision is read back from the compiled model: a CPU without bf16 units compiles f32 whatever
    the hint, and the result says so (``precision_read_back``).
    """
    path = require_file(path)
    _lazy.require("openvino", extra="openvino")
    models = {p: ov_compile(path, threads, {"INFERENCE_PRECISION_HINT": p}) for p in ("f32", "bf16")}
    got = models["bf16"].get_property("INFERENCE_PRECISION_HINT")
    got_name = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
    reqs = {p: m.create_infer_request() for p, m in models.items()}
    feed0 = _ov_feed(models["f32"])
    rng = np.random.default_rng(0)
    diff, agree = 0.0, 0
    for _ in range(inputs):
        feed = {k: rng.uniform(0, 255, v.shape).astype(v.dtype) for k, v in feed0.items()}
        outs = {p: np.asarray(r.infer(feed)[0], dtype=np.float32).copy() for p, r in reqs.items()}
        diff = max(diff, float(np.max(np.abs(outs["f32"] - outs["bf16"]))))
        agree += int(np.argmax(outs["f32"]) == np.argmax(outs["bf16"]))
    runs: dict[str, Callable[[], object]] = {p: partial(r.infer, feed0) for p, r in reqs.items()}
    samples, _ = interleave(runs, budget_s)
    return Bf16Check(
        str(path),
        threads,
        bf16_support(),
        got_name,
        float(np.median(samples["f32"])),
        float(np.median(samples["bf16"])),
        diff,
        agree / inputs,
        inputs,
    )
