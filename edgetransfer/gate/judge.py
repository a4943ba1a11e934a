"""The CI decision: a pure function of measurements and one budget.

:func:`judge` takes a :class:`~edgetransfer.records.Measurement` (measured live by
:func:`edgetransfer.evaluation.measure`, or read from a ``validation.json``) and a
:class:`~edgetransfer.records.Budget`, and returns a :class:`~edgetransfer.records.Verdict`.
Nothing here loads a model or imports a runtime, so ``check --from-report`` judges a report
measured elsewhere (another CI job, a device farm) with the same rule as the live check.

Shared runners are noisy, so latency is decided on repeated measurements: each repeat gives
one p90 (or one p50 ratio); the 95% t-interval of their mean is compared to the budget
(:mod:`edgetransfer.gate.stats`). Inside: passed; beyond: failed; straddling: inconclusive (exit 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from ..records import Budget, trust
from ..records.measure import Check, Measurement, ValidationReport, Verdict
from ..records.vocab import Provenance, Status
from . import stats

# A FAILED latency from repeats spread wider than this is the host's noise, not the model's:
# on a loaded 2-core runner p90s of repeats were seen to differ 2x (docs/tasks/check.md).
UNSTABLE_SPREAD = 1.5


def _check(name: str, status: Status, figure: float, budget: float, unit: str, prov: str, ci=None) -> Check:
    word = {Status.PASSED: "within", Status.FAILED: "over", Status.INCONCLUSIVE: "too close to call for"}[status]
    ci_text = f" (95% CI {ci[0]:.3g}..{ci[1]:.3g})" if ci and math.isfinite(ci[0]) else ""
    msg = (
        f"{name}: {figure:.4g} {unit} ({prov}){ci_text} is {word} the budget {budget:.4g} {unit} "
        f"(margin {budget - figure:+.3g} {unit})"
    )
    return Check(name, status, round(figure, 4), budget, unit, prov, ci, msg)


def _upper(name: str, figure: float, budget: float, unit: str, prov: str) -> Check:
    return _check(name, Status.PASSED if figure <= budget else Status.FAILED, figure, budget, unit, prov)


def _repeated(name: str, values: Sequence[float], budget: float, unit: str, prov: str) -> Check:
    status, (mean, low, high) = stats.decision(values, budget)
    return _check(name, Status(status), mean, budget, unit, prov, (low, high))


def _unstable(chk: Check, samples: Sequence[float], budget: float) -> Check:
    """A FAILED verdict from samples spread wider than :data:`UNSTABLE_SPREAD` is noise, not a
    result: say INCONCLUSIVE and why (an already inconclusive interval gets the same reason)."""
    if chk.status == Status.PASSED or len(samples) < 2:
        return chk
    lo, hi = min(samples), max(samples)
    if lo > 0 and hi / lo > UNSTABLE_SPREAD and lo <= budget:
        msg = (
            chk.message + f"; INCONCLUSIVE: the host is unstable (repeats ranged {lo:.3g}..{hi:.3g} ms, "
            f"{hi / lo:.1f}x), rerun on a quiet machine or raise --max-repeats"
        )
        return replace(chk, status=Status.INCONCLUSIVE, message=msg)
    return chk


def latency_check(m: Measurement, budget_ms: float) -> Check:
    """p90 against ``budget_ms``: an estimate is compared as it is; measured figures by the
    t-interval of the repeats' p90s (one figure alone is inconclusive unless the budget is far)."""
    if m.latency is None:
        raise ConfigError(f"{Path(m.artifact).name} on {m.target} has no latency figure", fix="measure latency first")
    prov = m.latency.provenance
    if prov == Provenance.ESTIMATED:
        return _upper("latency_p90", m.latency.p90, budget_ms, "ms", prov)
    samples = m.p90_repeats or (m.latency.p90,)
    result = m.latency.host.get("result")
    if result and len(samples) == 1:
        # One benchmark result measured elsewhere: its runs are already summed up in one p90 (no repeats
        # give an interval), so it is judged as reported, and the message says so.
        chk = _upper("latency_p90", m.latency.p90, budget_ms, "ms", prov)
        src = m.latency.detail.get("p90_from", "p90")
        return replace(
            chk,
            message=f"{chk.message} on {m.latency.host.get('device')}, as reported by {result} "
            "(one result: pass several --device-result files of repeated runs for a 95% interval)"
            + (
                f"; the tool gives no p90, its {src} is judged"
                if (src := m.latency.detail.get("p90_from", "p90")) != "p90"
                else ""
            ),
        )
    chk = _unstable(_repeated("latency_p90", samples, budget_ms, "ms", prov), samples, budget_ms)
    device = m.latency.host.get("device")  # set by device runners and device result files only
    return replace(chk, message=f"{chk.message} on {device}") if device else chk


def ratio_check(m: Measurement, max_ratio: float) -> Check:
    """p50(file) / p50(reference), from interleaved repeats measured on the target's own path."""
    if not m.ratio_repeats:
        raise ConfigError(
            "--max-latency-ratio needs --reference ARTIFACT (a second file measured in the same run)",
            fix="name the model to compare against with --reference",
        )
    chk = _repeated("latency_ratio", m.ratio_repeats, max_ratio, "x", m.provenance or Provenance.MEASURED)
    return replace(chk, message=chk.message + f" vs {Path(m.ratio_reference).name}")


def accuracy_check(m: Measurement, max_drop: float) -> Check:
    if m.accuracy_drop is None:
        raise ConfigError(
            f"{Path(m.artifact).name} on {m.target}: no accuracy drop was measured (no float reference)",
            fix="pass --data with held-out images, or drop --max-accuracy-drop",
        )
    prov = Provenance.ON_DEVICE if m.device_accuracy is not None else Provenance.MEASURED
    chk = _upper("accuracy_drop", m.accuracy_drop, max_drop, "points", prov)
    by = f" ({m.accuracy_by})" if m.accuracy_by else ""
    return replace(chk, message=chk.message + (f" on {m.accuracy_split}" if m.accuracy_split else "") + by)


def disagreement_check(m: Measurement, max_pct: float) -> Check:
    """Percent of held-out images whose top-1 differs between the device and this host running the same
    file: numeric drift of the device's kernels, judged apart from the accuracy both share."""
    dev = m.device_accuracy
    if dev is None:
        raise ConfigError(
            f"{Path(m.artifact).name} on {m.target}: no device ran the held-out images, so there is no "
            "host-device disagreement to judge",
            fix="use a runner target whose runner returns outputs (ssh, a command with {inputs} and {outputs}, "
            "adb with runner.python), with held-out data (--data), or drop --max-disagreement",
        )
    chk = _upper("disagreement", dev.disagreement_pct, max_pct, "%", Provenance.ON_DEVICE)
    return replace(
        chk,
        message=f"{chk.message}: {dev.label} vs {dev.host_runtime} on this host, {dev.images} images, "
        f"largest output difference {dev.max_abs_diff:.3g}",
    )


def memory_checks(m: Measurement, b: Budget) -> list[Check]:
    """RAM (the arena the real TFLM interpreter needs) and flash (the model's bytes), in KiB."""
    mem = m.memory
    if mem is None:
        raise ConfigError(
            f"{m.target}: RAM/flash budgets need the arena measured by a microcontroller runtime",
            fix="use a runtime: tflm target, or --max-size-mb",
        )
    out = []
    for name, figure, limit in (("ram", mem["arena_bytes"], b.ram_kb), ("flash", mem["flash_bytes"], b.flash_kb)):
        if limit is None:
            continue
        chk = _upper(name, figure / 1024, limit, "KiB", Provenance.MEASURED)
        where = f" (arena in {mem.get('arena_in') or 'no memory of the part'})" if name == "ram" else ""
        out.append(replace(chk, message=f"{chk.message}: {figure:,} bytes{where} on {m.target}"))
    return out


def peak_memory_check(m: Measurement, max_mb: float) -> Check:
    if m.peak_memory_mb is None:
        raise ConfigError(
            f"{m.target}: a peak_memory_mb budget needs memory measured by running the file "
            f"({m.provenance or 'no'} latency here measures none)",
            fix="gate peak memory on a measure: host or runner target, or remove the budget",
        )
    return _upper("peak_memory", m.peak_memory_mb, max_mb, "MB", m.provenance or Provenance.MEASURED)


def delegation_check(m: Measurement) -> Check:
    """The whole graph on the target's accelerator: as observed where the file ran (``m.delegation``), else
    as the static analyzer predicts (``m.compatibility``); failed naming the ops that fell back."""
    d = m.delegation
    if d is not None:
        share = d.nodes_accelerated / d.nodes_total if d.nodes_total else 0.0
        status = Status.PASSED if d.full else Status.FAILED
        words = "takes the whole graph" if d.full else "does not take the whole graph"
        msg = f"full_delegation: {words} on {m.target}: {d.describe()}"
        if d.float_ops:
            msg += f"; {d.float_ops} op(s) computed in float ({', '.join(d.float_op_types)})"
        return Check("full_delegation", status, round(share, 4), 1.0, "of nodes", d.source, None, msg)
    c = m.compatibility
    if c is None:
        raise ConfigError(
            f"{Path(m.artifact).name} on {m.target}: no delegation was observed (nothing ran here) and the "
            "profile names no delegate to predict it",
            fix="check on a host target, or add a delegate section to the profile, or drop --require-full-delegation",
        )
    full = bool(c.get("full"))
    fell = ", ".join(sorted(set(c.get("fallback_ops") or ()))) or "none named"
    msg = (
        f"full_delegation: {c.get('delegate')} is predicted to take {c.get('ops_delegated')}/{c.get('ops_total')} "
        f"ops in {c.get('partitions')} partition(s) on {m.target}" + ("" if full else f"; falls back: {fell}")
    )
    share = c["ops_delegated"] / c["ops_total"] if c.get("ops_total") else 0.0
    return Check("full_delegation", Status.PASSED if full else Status.FAILED, round(share, 4), 1.0, "of ops",
                 "predicted", None, msg)  # fmt: skip


def judge(m: Measurement, budget: Budget, *, source: str = "live") -> Verdict:
    """Every set budget of ``budget`` against ``m``; collects every check before returning.

    Raises:
        ConfigError: no budget is set, or a set budget has no figure to judge (exit 2).
    """
    checks: list[Check] = []
    if budget.latency_p90_ms is not None:
        checks.append(latency_check(m, budget.latency_p90_ms))
    if budget.latency_ratio is not None:
        checks.append(ratio_check(m, budget.latency_ratio))
    if budget.accuracy_drop is not None:
        checks.append(accuracy_check(m, budget.accuracy_drop))
    if budget.disagreement is not None:
        checks.append(disagreement_check(m, budget.disagreement))
    if budget.size_mb is not None:
        checks.append(_upper("size", m.size_bytes / 1e6, budget.size_mb, "MB", Provenance.MEASURED))
    if budget.peak_memory_mb is not None:
        checks.append(peak_memory_check(m, budget.peak_memory_mb))
    if budget.ram_kb is not None or budget.flash_kb is not None:
        checks += memory_checks(m, budget)
    if budget.full_delegation:
        checks.append(delegation_check(m))
    if not checks:
        raise ConfigError(
            f"no budget to check for {m.target}",
            fix="pass --max-latency-ms / --max-accuracy-drop / --max-size-mb / --max-disagreement, or add budgets "
            "to the profile",
        )
    return Verdict(m.artifact, m.target, tuple(checks), source, dict(m.settings))


def budget_for(target, *layers: Budget | None, accuracy: bool = True) -> Budget:
    """The budget on ``target``: its profile's, overridden by ``layers`` (pipeline file, then
    the command line). Microcontroller targets default RAM and flash to the part's memory.
    ``accuracy=False``: no held-out data can be had, so the profile's accuracy budget is left
    out (an explicit one stays, and fails clearly).

    Raises:
        ConfigError: RAM/flash budgets on a target whose runtime measures no memory.
    """
    merged = Budget.merge(*layers)
    memory = target.measures_memory
    if not memory and (merged.ram_kb is not None or merged.flash_kb is not None):
        raise ConfigError(
            f"--max-ram-kb / --max-flash-kb apply to microcontroller targets; {target.name} is "
            f"runtime {target.runtime}",
            fix="use --max-size-mb, or a runtime: tflm target",
        )
    profile = target.budgets
    if not accuracy:
        profile = replace(profile, accuracy_drop=None, disagreement=None)
    part = None
    if memory and target.memory is not None:
        mem = target.memory
        part = Budget(ram_kb=profile.ram_kb or (mem.sram_kb + mem.psram_kb), flash_kb=profile.flash_kb or mem.flash_kb)
    return Budget.merge(profile, part, merged)


def from_report(
    report: ValidationReport,
    target,
    layers: Sequence[Budget | None],
    *,
    artifact: str | None = None,
    source: str = "",
    sha256: str | None = None,
) -> list[Verdict]:
    """Judge the measurements of ``report`` on ``target`` (optionally one ``artifact``, by
    file name or path) without loading anything: the live check's rule on the same numbers.

    Args:
        sha256: the artifact's own sha256 (when the file is at hand): a measurement of another
            file with the same name is refused, naming the key (:mod:`edgetransfer.records.trust`).
    """
    # a bf16 execution of an fp32 file (validate --bf16) is a candidate, not the file as deployed by default
    found = [m for m in report.records if m.target == target.name and not m.execution]
    if artifact is not None:
        found = [m for m in found if Path(m.artifact).name == Path(artifact).name]
    if not found:
        have = sorted({f"{Path(m.artifact).name} on {m.target}" for m in report.records})
        raise ConfigError(
            f"the report has no measurement of {artifact or 'any file'} on {target.name}",
            path=source or None,
            fix=f"pick one it has ({', '.join(have) or 'none'}), or validate on that target first",
        )
    if sha256 is not None and artifact is not None:
        for m in found:
            where = f"{source or 'report'}: records[{report.records.index(m)}].sha256"
            trust.require_same_file(artifact, m.sha256, where, digest=sha256)
    return [judge(m, budget_for(target, *layers), source=source) for m in found]


def validate_samples(docs: Sequence, sha256: str, name: str) -> list[float]:
    """p90s from ``python -m edgetransfer.runtime bench --json`` documents, each checked to
    have measured THIS file (its sha256) and to be a positive, finite figure."""
    out = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ConfigError(
                f"latency sample {i + 1} is not a bench JSON document",
                fix="pass the output of `python -m edgetransfer.runtime bench MODEL --json`",
            )
        if d.get("sha256") != sha256:
            raise ConfigError(
                f"latency sample {i + 1} measured another file ({d.get('model', '?')}, sha256 "
                f"{str(d.get('sha256'))[:12]}), not {name} ({sha256[:12]})",
                fix="measure this exact file with `python -m edgetransfer.runtime bench`",
            )
        p90 = d.get("p90")
        if isinstance(p90, bool) or not isinstance(p90, (int, float)) or not math.isfinite(p90) or p90 <= 0:
            raise ConfigError(
                f"latency sample {i + 1} has p90 {p90!r}: not a positive number of ms",
                fix="pass unedited bench output",
            )
        out.append(float(p90))
    if not out:
        raise ConfigError("no latency samples given", fix="pass one or more bench --json outputs")
    return out


# ----------------------------------------------------------------------------- the pick: one rule for the best file
