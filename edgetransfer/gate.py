"""Budgets enforced in CI: latency, relative latency, accuracy drop, size.

Shared runners are noisy, so latency is decided on repeated measurements: each repeat
gives one p90 (or p50 for ratios); a 95% confidence interval of their mean is compared to
the budget. Inside the budget: passed; beyond it: failed; straddling it after the
allowed repeats: inconclusive (exit 4), never a coin flip.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import evaluation, latency, metrics
from . import targets as targets_lib
from .errors import EXIT_BUDGET, EXIT_INCONCLUSIVE, EXIT_OK, ConfigError
from .exporter import ExportedArtifact
from .runtime import isolate, load_session

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"
# Two-sided 95% Student t quantiles by degrees of freedom (n - 1).
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


@dataclass(frozen=True)
class Budget:
    """Limits to enforce; ``None`` means not checked."""

    latency_p90_ms: float | None = None
    latency_ratio: float | None = None  # artifact p50 / reference p50, same run
    accuracy_drop: float | None = None  # points
    size_mb: float | None = None
    ram_kb: float | None = None  # microcontrollers: the TFLM tensor arena
    flash_kb: float | None = None  # microcontrollers: the model's bytes in flash

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if v is None:
                continue
            if not math.isfinite(v) or v < 0 or (v == 0 and k != "accuracy_drop"):
                need = "zero or more" if k == "accuracy_drop" else "positive"
                raise ConfigError(f"budget {k}={v} must be a finite, {need} number", fix=f"pass a {need} limit")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    figure: float | None
    budget: float
    unit: str
    provenance: str
    interval: tuple[float, float] | None = None
    message: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    artifact: str
    target: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        return FAILED if FAILED in states else INCONCLUSIVE if INCONCLUSIVE in states else PASSED

    @property
    def exit_code(self) -> int:
        return {PASSED: EXIT_OK, FAILED: EXIT_BUDGET, INCONCLUSIVE: EXIT_INCONCLUSIVE}[self.status]

    def to_json(self) -> dict:
        return {
            "artifact": self.artifact,
            "target": self.target,
            "status": self.status,
            "exit_code": self.exit_code,
            "checks": [c.to_json() for c in self.checks],
        }


def interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): 95% t-interval of the mean of ``values``."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, -math.inf, math.inf
    t = _T95[min((k for k in _T95 if k >= n - 1), default=30)]
    half = t * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def decide(values: Sequence[float], budget: float) -> str:
    """passed / failed / inconclusive for repeated measurements against an upper budget."""
    _, low, high = interval(values)
    return PASSED if high <= budget else FAILED if low > budget else INCONCLUSIVE


def _repeat(
    measure_once, budget: float, min_repeats: int, max_repeats: int, first: float | None = None
) -> list[float]:
    values = [first] if first is not None else []
    values += [measure_once() for _ in range(min_repeats - len(values))]
    while decide(values, budget) == INCONCLUSIVE and len(values) < max_repeats:
        values.append(measure_once())
    return values


def _fmt(name, status, figure, budget, unit, prov, ci=None) -> Check:
    margin = budget - figure
    word = {PASSED: "within", FAILED: "over", INCONCLUSIVE: "too close to call for"}[status]
    ci_text = f" (95% CI {ci[0]:.3g}..{ci[1]:.3g})" if ci and math.isfinite(ci[0]) else ""
    msg = (
        f"{name}: {figure:.4g} {unit} ({prov}){ci_text} is {word} the budget {budget:.4g} {unit} "
        f"(margin {margin:+.3g} {unit})"
    )
    return Check(name, status, round(figure, 4), budget, unit, prov, ci, msg)


def latency_check(
    art: ExportedArtifact,
    target,
    budget_ms: float,
    *,
    samples: Sequence[float] | None = None,
    budget_s: float = 1.0,
    min_repeats: int = 3,
    max_repeats: int = 8,
) -> Check:
    """p90 latency against ``budget_ms``: from given p90s, else repeated through
    :func:`edgetransfer.evaluation.latency_on` (this host, the device's runner, or the estimate)."""
    prov = latency.MEASURED
    if samples is None:
        first = evaluation.latency_on(art, target, budget_s=budget_s)
        prov = first.provenance
        if prov == latency.ESTIMATED:
            status = PASSED if first.p90 <= budget_ms else FAILED
            return _fmt("latency_p90", status, first.p90, budget_ms, "ms", prov)

        def once() -> float:
            return evaluation.latency_on(art, target, budget_s=budget_s).p90

        samples = _repeat(once, budget_ms, min_repeats, max_repeats, first=first.p90)
    mean, low, high = interval(samples)
    chk = _fmt("latency_p90", decide(samples, budget_ms), mean, budget_ms, "ms", prov, (low, high))
    return _unstable(chk, samples, budget_ms)


def _unstable(chk: Check, samples: Sequence[float], budget: float) -> Check:
    """A FAILED verdict from samples whose spread is wider than the margin is noise, not a
    result: on a loaded host the p90s of repeats can differ 2x. Say INCONCLUSIVE and why (an
    interval that is already inconclusive gets the same reason: the spread, not the budget, decided it)."""
    if chk.status == PASSED or len(samples) < 2:
        return chk
    lo, hi = min(samples), max(samples)
    if lo > 0 and hi / lo > 1.5 and lo <= budget:
        msg = (
            chk.message + f"; INCONCLUSIVE: the host is unstable (repeats ranged {lo:.3g}..{hi:.3g} ms, "
            f"{hi / lo:.1f}x), rerun on a quiet machine or raise --max-repeats"
        )
        return Check(**{**asdict(chk), "status": INCONCLUSIVE, "message": msg})
    return chk


def ratio_check(
    art: ExportedArtifact,
    reference: ExportedArtifact,
    target,
    max_ratio: float,
    *,
    budget_s: float = 1.0,
    min_repeats: int = 3,
    max_repeats: int = 8,
) -> Check:
    """p50(artifact) / p50(reference), both measured in the same run, interleaved: holds across machines."""

    def once() -> float:
        lat = [
            latency.measure(
                lambda a=a: load_session(a.path, target.threads, target.provider),
                evaluation.probe_batch(a.io.size),
                budget_s=budget_s,
            ).p50
            for a in (art, reference)
        ]
        return lat[0] / lat[1]

    values = _repeat(once, max_ratio, min_repeats, max_repeats)
    mean, low, high = interval(values)
    chk = _fmt("latency_ratio", decide(values, max_ratio), mean, max_ratio, "x", latency.MEASURED, (low, high))
    return Check(**{**asdict(chk), "message": chk.message + f" vs {Path(reference.path).name}"})


def accuracy_check(art: ExportedArtifact, data_dir, max_drop: float, runtime: str = "default") -> Check:
    """Accuracy drop in points against the float model, on the held-out data (default the run's),
    run in the target's runtime kind (``tflm``: the real TFLM kernels)."""
    run = art.run()
    ho = evaluation.held_out(run, data_dir)
    ref, _ = evaluation.reference_probs(run, ho.x)
    n = len(run.classes)
    ref_acc = metrics.scores(ref, ho.y, n, str(run.model_path)).accuracy
    session = evaluation._session(art.path, runtime)
    got = metrics.scores(evaluation.predict(session, ho.x, str(art.path)), ho.y, n, str(art.path))
    drop = 100 * (ref_acc - got.accuracy)
    chk = _fmt("accuracy_drop", PASSED if drop <= max_drop else FAILED, drop, max_drop, "points", latency.MEASURED)
    return Check(**{**asdict(chk), "message": chk.message + f" on {ho.describe()}"})


def memory_checks(art: ExportedArtifact, target, b: Budget) -> list[Check]:
    """RAM (the arena the real TFLM interpreter needs) and flash (the model's bytes) in KiB."""
    mem = evaluation.tflm_memory(art, target)
    out = []
    for name, figure, limit in (("ram", mem["arena_bytes"], b.ram_kb), ("flash", mem["flash_bytes"], b.flash_kb)):
        if limit is None:
            continue
        kb = figure / 1024
        chk = _fmt(name, PASSED if kb <= limit else FAILED, kb, limit, "KiB", latency.MEASURED)
        where = f" (arena in {mem['arena_in'] or 'no memory of the part'})" if name == "ram" else ""
        out.append(Check(**{**asdict(chk), "message": f"{chk.message}: {figure:,} bytes{where} on {target.name}"}))
    return out


def size_check(art: ExportedArtifact, max_mb: float) -> Check:
    mb = Path(art.path).stat().st_size / 1e6
    return _fmt("size", PASSED if mb <= max_mb else FAILED, mb, max_mb, "MB", latency.MEASURED)


def check(
    artifact: str | Path,
    target_name: str,
    *,
    data_dir=None,
    budget: Budget | None = None,
    reference: str | Path | None = None,
    latency_samples: Sequence[dict] | None = None,
    targets_dir=None,
    budget_s: float = 1.0,
    min_repeats: int = 3,
    max_repeats: int = 8,
) -> Verdict:
    """Enforce the target's budgets, overridden by ``budget``; collects every check before returning."""
    art = ExportedArtifact.from_manifest(artifact)
    target = targets_lib.get(target_name, targets_dir)
    isolate.probe(art.path)  # a file from anywhere: load it in a child before this process does
    ref_art = ExportedArtifact.from_manifest(reference) if reference is not None else None
    targets_lib.require_runnable(target, art.format, art.precision, Path(art.path).name)
    b = _merge(target, budget or Budget(), has_data=data_dir is not None)
    p90s = validate_samples(latency_samples, art) if latency_samples is not None else None
    checks = []
    if b.latency_p90_ms is not None:
        checks.append(
            latency_check(
                art,
                target,
                b.latency_p90_ms,
                samples=p90s,
                budget_s=budget_s,
                min_repeats=min_repeats,
                max_repeats=max_repeats,
            )
        )
    if b.latency_ratio is not None:
        if ref_art is None:
            raise ConfigError(
                "--max-latency-ratio needs --reference ARTIFACT", fix="name the model to compare against"
            )
        checks.append(
            ratio_check(
                art,
                ref_art,
                target,
                b.latency_ratio,
                budget_s=budget_s,
                min_repeats=min_repeats,
                max_repeats=max_repeats,
            )
        )
    if b.accuracy_drop is not None:  # without --data: the run's own held-out split
        checks.append(
            accuracy_check(art, data_dir, b.accuracy_drop, "tflm" if target.runtime == "tflm" else "default")
        )
    if b.size_mb is not None:
        checks.append(size_check(art, b.size_mb))
    if b.ram_kb is not None or b.flash_kb is not None:
        checks += memory_checks(art, target, b)
    if not checks:
        raise ConfigError(
            f"no budget to check for {target.name}",
            fix="pass --max-latency-ms / --max-accuracy-drop / --max-size-mb, or add budgets to the profile",
        )
    return Verdict(str(art.path), target.name, tuple(checks))


def validate_samples(docs: Sequence, art: ExportedArtifact) -> list[float]:
    """p90s from ``python -m edgetransfer.runtime bench --json`` documents, each checked to
    have measured THIS file (its sha256) and to be a positive, finite figure."""
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ConfigError(
                f"latency sample {i + 1} is not a bench JSON document",
                fix="pass the output of `python -m edgetransfer.runtime bench MODEL --json`",
            )
        if d.get("sha256") != art.sha256:
            raise ConfigError(
                f"latency sample {i + 1} measured another file ({d.get('model', '?')}, sha256 "
                f"{str(d.get('sha256'))[:12]}), not {art.path.name} ({art.sha256[:12]})",
                path=art.path,
                fix="measure this exact file with `python -m edgetransfer.runtime bench`",
            )
        p90 = d.get("p90")
        if not isinstance(p90, (int, float)) or not math.isfinite(p90) or p90 <= 0:
            raise ConfigError(
                f"latency sample {i + 1} has p90 {p90!r}: not a positive number of ms",
                fix="pass unedited bench output",
            )
        out.append(float(p90))
    if not out:
        raise ConfigError("no latency samples given", fix="pass one or more bench --json outputs")
    return out


def _merge(target, override: Budget, *, has_data: bool) -> Budget:
    """Command-line budgets win over the profile's; the profile's accuracy budget applies
    only when there is data to measure it on (an explicit one uses the run's held-out split).
    RAM and flash budgets belong to microcontroller (``runtime: tflm``) targets, defaulting to the part's memory."""
    pb = target.budgets
    mcu = target.runtime == "tflm"
    if not mcu and (override.ram_kb is not None or override.flash_kb is not None):
        raise ConfigError(
            f"--max-ram-kb / --max-flash-kb apply to microcontroller targets; {target.name} is "
            f"runtime {target.runtime}",
            fix="use --max-size-mb, or a runtime: tflm target",
        )
    mem = target.memory
    return Budget(
        latency_p90_ms=override.latency_p90_ms if override.latency_p90_ms is not None else pb.latency_p90_ms,
        latency_ratio=override.latency_ratio,
        accuracy_drop=override.accuracy_drop
        if override.accuracy_drop is not None
        else (pb.accuracy_drop if has_data else None),
        size_mb=override.size_mb if override.size_mb is not None else pb.size_mb,
        ram_kb=override.ram_kb
        if override.ram_kb is not None
        else ((pb.ram_kb or (mem.sram_kb + mem.psram_kb)) if mcu and mem else None),
        flash_kb=override.flash_kb
        if override.flash_kb is not None
        else ((pb.flash_kb or mem.flash_kb) if mcu and mem else None),
    )
