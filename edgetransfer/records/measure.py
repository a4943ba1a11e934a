"""Measurements of exported files on targets, the validation report, and the gate's verdict.

A :class:`Measurement` is everything measured of one artifact on one target (accuracy,
agreement, latency with its provenance and runtime, memory fit, delegate compatibility, and
the repeated figures a CI decision needs). ``validate`` writes a :class:`ValidationReport` of
them; ``check`` judges one (:func:`edgetransfer.gate.judge`), live or from a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import EXIT_BUDGET, EXIT_INCONCLUSIVE, EXIT_OK
from .base import Record
from .delegation import Delegation
from .device import DeviceAccuracy
from .latency import Latency
from .profile import OpProfile
from .vocab import Status


@dataclass(frozen=True)
class Measurement(Record):
    """One artifact on one target.

    Attributes:
        latency: the figure (pooled over repeats when measured), with its provenance.
        p90_repeats: the p90 of each repeated measurement (the gate's t-interval input).
        ratio_reference / ratio_repeats: a reference file and p50(file)/p50(reference) per
            interleaved repeat, measured on the target's own path.
        memory: microcontrollers: arena and flash bytes and whether they fit the part.
        peak_memory_mb: peak resident memory of loading and running the file in a fresh process.
        settings: the runtime settings the figure was measured with (``threads`` and the runtime's own
            keys, :attr:`~edgetransfer.runtime.spec.RuntimeSpec.tune_candidates`); empty: the runtime's
            defaults. ``validate --tune`` records its winner here; ``check --settings-from`` and
            ``validate --settings-from`` load the runtime with them again.
        execution: the precision the runtime computed in when it is not the file's own (``bf16``: an
            fp32 file run in bf16 by ``validate --bf16``); empty: the file's precision.
        profiles: per-op profiles, one per runtime measured (``validate --profile``), worst op first.
        tuning: ``validate --tune``'s trials summarised per runtime (default and winning medians).
        delegation: how the runtime that ran the file here delegated it, observed (accelerator, nodes
            taken, partitions, ops that fell back, ops left in float); ``None`` where nothing ran
            (``compatibility`` holds the static prediction).
        accuracy_by: who produced ``accuracy``: ``litert, host`` (a runtime on this machine) or the device's
            label (``device: raspberrypi over ssh``); empty in reports written before it was recorded.
        device_accuracy: on a runner target whose device ran the held-out images: the device's run against
            this host's run of the same file (``accuracy`` and ``agreement`` are then the device's).
    """

    KIND: ClassVar[str] = "edgetransfer.measurement"
    SCHEMA: ClassVar[int] = 1
    # Written for readers of today's JSON, derived from the fields, ignored when read back.
    DERIVED: ClassVar[tuple[str, ...]] = ("latency_ms", "provenance", "runtime")
    # Checked when read from JSON (records.base): a report is a gate's input, as untrusted as a model.
    BOUNDS: ClassVar[dict[str, str]] = {
        "size_bytes": "positive",
        "sha256": "sha256",
        "accuracy": "fraction",
        "agreement": "fraction",
        "per_class_accuracy": "fraction",
        "p90_repeats": "positive",
        "ratio_repeats": "positive",
        "peak_memory_mb": "positive",
    }

    artifact: str
    format: str
    precision: str
    target: str
    size_bytes: int
    latency: Latency | None = None
    sha256: str = ""
    target_profile: str = ""
    accuracy: float | None = None
    agreement: float | None = None
    accuracy_drop: float | None = None
    accuracy_split: str = ""
    per_class_accuracy: tuple[float | None, ...] = ()
    p90_repeats: tuple[float, ...] = ()
    ratio_reference: str = ""
    ratio_repeats: tuple[float, ...] = ()
    compatibility: dict | None = None
    memory: dict | None = None
    peak_memory_mb: float | None = None
    settings: dict = field(default_factory=dict)
    execution: str = ""
    profiles: tuple[OpProfile, ...] = ()
    tuning: dict = field(default_factory=dict)
    delegation: Delegation | None = None
    accuracy_by: str = ""
    device_accuracy: DeviceAccuracy | None = None

    @property
    def label(self) -> str:
        """The precision as measured: ``fp32``, or ``fp32 as bf16`` for bf16 execution of an fp32 file."""
        return f"{self.precision} as {self.execution}" if self.execution else str(self.precision)

    @property
    def provenance(self) -> str | None:
        return self.latency.provenance if self.latency is not None else None

    @property
    def runtime(self) -> str | None:
        return self.latency.detail.get("runtime") if self.latency is not None else None

    @property
    def fits(self) -> bool:
        """Whether the file fits its target's memory (``True`` where not measured): a file that cannot run
        there is never the best (issue #26)."""
        return (self.memory or {}).get("fits", True) is not False

    def derived(self) -> dict[str, Any]:
        lat = self.latency
        ms = (
            {"p50": lat.p50, "p90": lat.p90, "p99": lat.p99, "mean": lat.mean, "std": lat.std, "runs": lat.runs}
            if lat
            else None
        )
        return {"latency_ms": ms, "provenance": self.provenance, "runtime": self.runtime}


@dataclass(frozen=True)
class Reference(Record):
    """The float Keras model on the same held-out data and host."""

    DERIVED: ClassVar[tuple[str, ...]] = ("latency_ms",)
    BOUNDS: ClassVar[dict[str, str]] = {"accuracy": "fraction"}

    accuracy: float | None
    model: str
    latency: Latency | None = None  # None: predictions read from the export's stored reference, Keras not run

    def derived(self) -> dict[str, Any]:
        lat = self.latency
        return {"latency_ms": {"p50": lat.p50, "p90": lat.p90, "p99": lat.p99} if lat is not None else None}


@dataclass(frozen=True)
class Best(Record):
    """Per target: the fastest artifact within the target's accuracy budget (and memory, where measured)."""

    BOUNDS: ClassVar[dict[str, str]] = {"p50_ms": "positive", "accuracy": "fraction"}

    artifact: str
    p50_ms: float
    provenance: str
    accuracy: float | None
    runtime: str | None = None
    execution: str = ""  # bf16: the fp32 file run in bf16 (Measurement.execution)
    settings: dict = field(default_factory=dict)  # the runtime settings of the figure (Measurement.settings)


@dataclass(frozen=True)
class ValidationReport(Record):
    """``validation.json``: every artifact x target measured once, for ``check --from-report``,
    the HTML/Markdown report and other CI jobs."""

    KIND: ClassVar[str] = "edgetransfer.validation"
    SCHEMA: ClassVar[int] = 3
    # "verdict": the pipeline file's report.json carries its check's verdict beside the report.
    DERIVED: ClassVar[tuple[str, ...]] = ("data", "verdict")

    held_out: dict
    reference: Reference | None  # None: a run imported from an exported file has no float model
    records: tuple[Measurement, ...]
    best: dict[str, Best]
    findings: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    confusion: dict[str, Any] = field(default_factory=dict)  # artifact name (or keras-float) -> matrix
    host: dict = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # target name -> profile file

    @property
    def data(self) -> str:
        return str(self.held_out.get("source", ""))

    def derived(self) -> dict[str, Any]:
        return {"data": self.data}


@dataclass(frozen=True)
class Check(Record):
    """One budget judged: the figure, the limit, where the figure comes from, and the words."""

    name: str
    status: Status
    figure: float | None
    budget: float
    unit: str
    provenance: str
    interval: tuple[float, float] | None = None
    message: str = ""


_EXIT = {Status.PASSED: EXIT_OK, Status.FAILED: EXIT_BUDGET, Status.INCONCLUSIVE: EXIT_INCONCLUSIVE}


@dataclass(frozen=True)
class Verdict(Record):
    """Every budget of one artifact on one target; the worst status decides the exit code."""

    KIND: ClassVar[str] = "edgetransfer.verdict"
    SCHEMA: ClassVar[int] = 1
    DERIVED: ClassVar[tuple[str, ...]] = ("status", "exit_code")

    artifact: str
    target: str
    checks: tuple[Check, ...] = ()
    source: str = "live"  # live | the report file judged
    settings: dict = field(default_factory=dict)  # the runtime settings of the latency figure (Measurement.settings)
    profiles: tuple[OpProfile, ...] = ()  # check --profile: where the checked figure's milliseconds go

    @property
    def status(self) -> Status:
        states = {c.status for c in self.checks}
        return (
            Status.FAILED
            if Status.FAILED in states
            else Status.INCONCLUSIVE
            if Status.INCONCLUSIVE in states
            else Status.PASSED
        )

    @property
    def exit_code(self) -> int:
        return _EXIT[self.status]

    def derived(self) -> dict[str, Any]:
        return {"status": self.status.value, "exit_code": self.exit_code}
