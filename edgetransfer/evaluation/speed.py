"""Where the milliseconds go and which runtime settings win: ``validate --profile / --tune / --bf16``.

- :func:`profiles_for`: per-op profiles of a file on a target, one per runtime measured on the host
  (the runtime's registered profiler, :attr:`~edgetransfer.runtime.spec.RuntimeSpec.profiler`), or the
  device's own op table on a runner target that prints one (adb: ``benchmark_model
  --enable_op_profiling=true``, read by :func:`edgetransfer.runtime.op_table.parse_benchmark_model`).
  Where none can be had the profile says why (``supported=False``), never a made-up table.
- :func:`tune_host`: the runtime settings (:attr:`RuntimeSpec.tune_candidates` x thread counts) timed
  interleaved on the host (:func:`edgetransfer.runtime.tune.tune`); the winner's settings are what the
  measurement then loads the runtime with, and are recorded with it.
- :func:`bf16_runtimes`: host runtimes that can run an fp32 file in bf16 on this CPU.
- :func:`pinned_settings`: the settings a validation report recorded, for ``check`` and re-validation.

Settings are a plain dict in the runtime's own keys plus ``threads``; :func:`load_args` splits them.
No runtime or format name is compared here: the registry says what each can do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, EdgeTransferError, RuntimeBackendError
from ..exporter.formats import graphops
from ..records.measure import ValidationReport
from ..records.profile import OpProfile
from ..records.vocab import MeasureMode
from ..runtime import spec as runtime_spec

# Profiled runs after the warm-up: enough for a stable mean per op on a 1-10 ms model (each profiled
# run is slower than a plain one, so the figure itself comes from the plain timed runs).
PROFILE_RUNS, PROFILE_WARMUP = 20, 5


@dataclass(frozen=True)
class SpeedOptions:
    """What ``validate`` does beyond measuring: profile, tune, bf16, or reuse recorded settings.

    Attributes:
        pinned: ``{(sha256, target): {runtime: settings}}`` from an earlier report (``--settings-from``).
    """

    profile: bool = False
    tune: bool = False
    bf16: bool = False
    tune_budget_s: float = 4.0
    pinned: dict | None = None


def load_args(settings: dict | None, default_threads: int | None) -> tuple[int | None, dict]:
    """``(threads, the runtime's own settings)`` from a recorded settings dict (``threads`` in it wins)."""
    own = dict(settings or {})
    threads = own.pop("threads", None)
    return (int(threads) if threads else default_threads), own


def host_target(target) -> bool:
    """Whether ``target``'s latency is timed on this machine (where profiles and tuning can run)."""
    return target.measure == MeasureMode.HOST and runtime_spec.get(target.runtime).measures_latency_here


def _unsupported(art, runtime: str, threads: int | None, reason: str) -> OpProfile:
    return OpProfile(str(art.path), runtime, threads, 0, 0.0, 0.0, supported=False, reason=reason)


def profiles_for(art, target, measured: dict[str, dict]) -> tuple[OpProfile, ...]:
    """One profile per runtime in ``measured`` (``{runtime: settings}``) on a host target, the device's
    own on a runner target, or one saying why there is none (an estimate ran nothing)."""
    if target.measure == MeasureMode.RUNNER:
        try:
            return (runner_profile(art, target),)
        except RuntimeBackendError as exc:  # the figure stands; the profile says why it is missing
            return (
                _unsupported(art, f"{target.runner.kind} runner", target.threads, f"profiling failed: {exc.problem}"),
            )
    if not host_target(target):
        return (_unsupported(art, target.runtime, target.threads, "latency on this target is estimated: nothing ran"),)
    out = []
    for name, settings in measured.items():
        threads, own = load_args(settings, target.threads)
        try:
            prof = runtime_spec.get(name).profile(art.path, threads, PROFILE_RUNS, PROFILE_WARMUP, own)
        except EdgeTransferError as exc:  # a profile is extra: say why it failed, keep the measurement
            prof = _unsupported(art, name, threads, f"profiling failed: {exc.problem}")
        out.append(prof)
    return tuple(out)


def runner_profile(art, target) -> OpProfile:
    """The device's own per-op table (a runner whose tool prints one), joined to the file's ops by node index.

    Raises:
        RuntimeBackendError: the runner failed, or its tool printed no op table.
    """
    from ..runtime.op_table import parse_benchmark_model

    runner = target.runner
    if not runner.op_profile:
        return _unsupported(
            art,
            f"{runner.kind} runner",
            target.threads,
            f"the {runner.kind} runner measures end to end and prints no per-op times (an adb target with "
            "benchmark_model does)",
        )
    target.require_command_allowed()
    res = runner.run(Path(art.path), target.threads, profile=True)
    try:
        ops = graphops.ops_for(art.path)
    except Exception:  # noqa: BLE001 - the join is extra: the device's table stands without it
        ops = None
    prof = parse_benchmark_model(res.output, str(art.path), target.threads, ops)
    return prof


def thread_candidates(target) -> tuple[int, ...]:
    """The target's thread count where its profile fixes one (a device fact), else 1 up to this host's cores."""
    if target.threads:
        return (int(target.threads),)
    cores = os.cpu_count() or 1
    return tuple(sorted({1, *(n for n in (2, 4) if n <= cores), cores}))


def tune_host(art, target, runtimes: list[str], budget_s: float) -> tuple[dict[str, dict], dict[str, dict]]:
    """``({runtime: winning settings}, {runtime: summary})`` for the host ``runtimes`` that have candidates.

    A runtime whose candidates cannot be loaded keeps its defaults, and the summary says why.
    """
    from ..runtime import tune

    settings: dict[str, dict] = {}
    summary: dict[str, dict] = {}
    for name in runtimes:
        spec = runtime_spec.get(name)
        if not spec.tune_candidates:
            continue
        try:
            res = tune.tune(art.path, name, thread_candidates(target), budget_s=budget_s)
        except EdgeTransferError as exc:
            summary[name] = {"error": exc.problem}
            continue
        settings[name] = dict(res.settings)
        summary[name] = {
            "settings": dict(res.settings),
            "p50_ms": round(res.p50_ms, 4),
            "default_settings": dict(res.default_settings),
            "default_p50_ms": round(res.default_p50_ms, 4) if res.default_p50_ms else None,
            "trials": len(res.trials),
            "rounds": res.rounds,
        }
    return settings, summary


def bf16_units() -> bool:
    """Whether this CPU has bf16 units (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo)."""
    from ..runtime.tune import bf16_support

    return any(bf16_support().values())


def bf16_runtimes(runtimes: list[str]) -> list[str]:
    """The host ``runtimes`` that run an fp32 file in bf16 on this CPU (none without bf16 units)."""
    if not bf16_units():
        return []
    return [n for n in runtimes if runtime_spec.get(n).bf16]


def bf16_settings(name: str, base: dict | None = None) -> dict:
    """``base`` (tuned or recorded settings) with the runtime's bf16 switch on."""
    return {**(base or {}), **runtime_spec.get(name).bf16}


def pinned_settings(report_path: str | Path) -> dict:
    """``{(sha256, target): {runtime: settings}}`` of every measurement in a report that recorded settings
    (bf16 executions left out: they are measured again only with ``--bf16``).

    Raises:
        ConfigError: not a validation report this version reads.
    """
    rep = ValidationReport.read(report_path)
    out: dict = {}
    for i, m in enumerate(rep.records):
        if m.settings and m.runtime and not m.execution:
            where = f"{report_path}: records[{i}].settings"
            out[(m.sha256, m.target)] = {m.runtime: runtime_spec.check_settings(m.runtime, dict(m.settings), where)}
    return out


def require_pinned(pinned: dict, art, target_name: str, source: str | Path) -> dict[str, dict]:
    """The recorded settings of ``art`` on ``target_name``; a report without them is a clear error."""
    found = pinned.get((art.sha256, target_name))
    if found is None:
        raise ConfigError(
            f"{source} recorded no runtime settings for this file on {target_name} (or measured another file)",
            path=art.path,
            fix="validate it with --tune on that target first, or drop --settings-from",
        )
    return found
