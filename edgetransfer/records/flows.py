"""Records of the orchestration above the stages: the sweep and the pipeline file.

- :class:`SweepPoint` (one ``configs/<slug>.json``), :class:`SweepStats`, :class:`SweepResult`
  (``sweep.json``), :class:`Grid` and :class:`SweepState` (``sweep-state.json``);
- :class:`PipelineFile`: a ``pipeline.yaml`` as data (the sweep writes one per pick by dumping
  it, and :meth:`edgetransfer.flows.pipeline.Flow.from_yaml` reads it back), with its sections
  :class:`ExportSpec`, :class:`ValidateSpec`, :class:`CheckSpec`, :class:`SweepSpec`;
- :class:`PipelineState`: ``pipeline-state.json``, the fingerprints of the stages last run.

``sweep.json`` keeps the keys it had before it was a record (``budgets`` as ``max_latency_ms`` /
``max_size_mb`` / ``max_accuracy_drop``), plus ``kind`` and ``schema``; a document written
before (no ``kind``) reads as schema 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..errors import EXIT_BUDGET, ConfigError
from .base import Record, _from_dict
from .budget import Budget
from .recipe import DEFAULT_CALIBRATION_SIZE

BF16 = "bf16"  # SweepPoint.execution of an fp32 file run in bf16 (Measurement.execution, validate --bf16)


@dataclass(frozen=True)
class TargetLatency(Record):
    """Latency of one configuration on one target, ms, with where it comes from."""

    p50_ms: float
    p90_ms: float
    provenance: str  # measured | on-device | estimated (records.vocab.Provenance values)
    runtime: str | None = None


@dataclass(frozen=True)
class SweepPoint(Record):
    """One configuration and its figures (accuracy as a fraction, drop in points).

    ``seconds`` is what computing it cost (its share of the group's train + export + validate),
    kept so a resumed sweep still reports the original timings. ``teacher`` is the run its
    model was distilled from (``sweep --teacher``; relative to the sweep folder when inside it),
    empty for a plainly trained configuration (and in files written before distillation).
    ``execution`` is the precision the runtime computed in when it is not the file's own (``bf16``:
    the fp32 file run in bf16 by ``sweep --bf16``, its accuracy and latency its own), empty otherwise
    (and in files written before it).
    """

    KIND: ClassVar[str] = "edgetransfer.sweep-point"
    SCHEMA: ClassVar[int] = 1

    backbone: str
    image_size: int
    precision: str
    accuracy: float
    float_accuracy: float
    accuracy_drop: float
    size_bytes: int
    macs: int
    latency: dict[str, TargetLatency]
    artifact: str = ""
    key: str = ""
    seconds: float = 0.0
    teacher: str = ""
    execution: str = ""

    @property
    def distilled(self) -> bool:
        return bool(self.teacher)

    @property
    def label(self) -> str:
        """The precision as run: ``fp32``, or ``fp32 as bf16`` (as :attr:`Measurement.label` says it)."""
        return f"{self.precision} as {self.execution}" if self.execution else self.precision

    @property
    def tag(self) -> str:
        """The configuration within its group, as its file names it: ``fp32`` or ``fp32-bf16``."""
        return f"{self.precision}-{self.execution}" if self.execution else self.precision

    @property
    def name(self) -> str:
        return f"{self.backbone} {self.image_size} {self.label}{' distilled' if self.teacher else ''}"

    @classmethod
    def from_json(cls, doc: Any, where: str = "sweep point") -> SweepPoint:
        point = _from_dict(cls, doc, where)  # dict[str, TargetLatency] values are decoded by the base
        if not isinstance(point.latency, dict):
            raise ConfigError(f"{where}.latency: expected a mapping", fix="re-create the file with this version")
        return point


@dataclass(frozen=True)
class SweepStats(Record):
    """What one sweep call computed and reused; ``seconds`` is this call's wall time and
    ``compute_seconds`` what computing every reported configuration cost when it was computed."""

    configs: int = 0
    computed: int = 0
    reused: int = 0  # finished configurations skipped (resume)
    trained: int = 0  # runs trained (one per backbone x size)
    runs_reused: int = 0
    exported: int = 0
    exports_reused: int = 0
    feature_hits: int = 0  # feature vectors read from the cache by the runs trained here
    feature_misses: int = 0
    memo_hits: int = 0  # conversions and predictions reused from the memo (edgetransfer.memo)
    memo_misses: int = 0
    stale: int = 0  # finished configurations recomputed because data or settings changed
    distilled: int = 0  # student runs trained from the teacher (sweep --teacher)
    seconds: float = 0.0
    compute_seconds: float = 0.0


@dataclass(frozen=True)
class Grid(Record):
    """The checked grid: per backbone its sizes, the precisions, the target profile names."""

    sizes: dict[str, tuple[int, ...]]
    precisions: tuple[str, ...]
    targets: tuple[str, ...]

    def configs(self) -> list[tuple[str, int, str]]:
        return [(b, s, p) for b, sizes in self.sizes.items() for s in sizes for p in self.precisions]

    def __post_init__(self) -> None:  # read from JSON, the sizes are lists: hold tuples either way
        object.__setattr__(self, "sizes", {b: tuple(int(s) for s in v) for b, v in dict(self.sizes).items()})


@dataclass(frozen=True)
class SweepState(Record):
    """``sweep-state.json``: what the last sweep in a folder ran, so the next one can say what changed."""

    KIND: ClassVar[str] = "edgetransfer.sweep-state"
    SCHEMA: ClassVar[int] = 1

    grid: Grid
    data: str  # the data fingerprint
    train: dict[str, Any]  # the TrainConfig fields
    version: str


def describe_limits(b: Budget) -> str:
    """The sweep's three budgets in words: ``p90 <= 8 ms, size <= 4 MB, drop <= 1 points`` (or ``no budgets``)."""
    parts = [
        f"p90 <= {b.latency_p90_ms:g} ms" if b.latency_p90_ms is not None else "",
        f"size <= {b.size_mb:g} MB" if b.size_mb is not None else "",
        f"drop <= {b.accuracy_drop:g} points" if b.accuracy_drop is not None else "",
    ]
    return ", ".join(p for p in parts if p) or "no budgets"


def limits_to_json(b: Budget) -> dict:
    """The three budgets a sweep judges, under the keys ``sweep.json`` has always used."""
    return {"max_latency_ms": b.latency_p90_ms, "max_size_mb": b.size_mb, "max_accuracy_drop": b.accuracy_drop}


def limits_from_json(doc: Any, where: str) -> Budget:
    keys = {"max_latency_ms", "max_size_mb", "max_accuracy_drop"}
    if not isinstance(doc, dict) or set(doc) != keys:
        raise ConfigError(f"{where}: expected exactly the keys {sorted(keys)}", fix="re-create the file")
    return Budget(
        latency_p90_ms=doc["max_latency_ms"], size_mb=doc["max_size_mb"], accuracy_drop=doc["max_accuracy_drop"]
    )


@dataclass(frozen=True)
class SweepTeacher(Record):
    """The teacher of a sweep's distilled configurations (``sweep --teacher auto|RUN``).

    ``chosen``: ``auto`` (the grid's group whose float model scored best on the held-out split)
    or ``given`` (a run passed by path). ``accuracy`` is its float held-out accuracy.
    """

    run: str
    backbone: str
    image_size: int
    accuracy: float
    chosen: str = "auto"
    macs: int = 0

    @property
    def name(self) -> str:
        return f"{self.backbone} {self.image_size}"


@dataclass(frozen=True)
class SweepResult(Record):
    """A finished sweep (``sweep.json``): every configuration, the fronts and the picks per target.

    ``limits`` holds each target's :class:`~edgetransfer.records.Budget` (written as ``budgets``).
    With a teacher, ``configs`` holds the plain and the distilled configurations, ``pareto``
    and the picks range over both, and ``plain_pareto`` is the front of the plain ones alone
    (what the same sweep gives without the teacher); both are empty/``None`` otherwise, and
    in files written before distillation.
    """

    KIND: ClassVar[str] = "edgetransfer.sweep"
    SCHEMA: ClassVar[int] = 1

    configs: tuple[SweepPoint, ...]
    targets: tuple[str, ...]
    pareto: dict[str, tuple[int, ...]]
    best: dict[str, int | None]
    closest: dict[str, int | None]
    limits: dict[str, Budget]
    stats: SweepStats
    out: Path
    pipelines: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    teacher: SweepTeacher | None = None
    plain_pareto: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when a target has no configuration within its budgets (:meth:`failure` says why)."""
        return EXIT_BUDGET if any(v is None for v in self.best.values()) else 0

    def summary(self, i: int, target: str) -> str:
        """Configuration ``i``'s figures on ``target``, for messages."""
        p = self.configs[i]
        lat = p.latency[target]
        return (
            f"{p.name} (accuracy {p.accuracy:.4f}, drop {p.accuracy_drop:.2f} points, "
            f"p90 {lat.p90_ms:.2f} ms {lat.provenance}, {p.size_bytes / 1e6:.2f} MB)"
        )

    def failure(self) -> str | None:
        """Why the sweep failed its budgets (naming the closest configuration), or ``None``."""
        bad = [t for t, v in self.best.items() if v is None]
        parts = []
        for t in bad:
            c = self.closest.get(t)
            near = "no configuration runs there" if c is None else f"closest is #{c} {self.summary(c, t)}"
            parts.append(f"no configuration meets the budget on {t} ({describe_limits(self.limits[t])}); {near}")
        return "; ".join(parts) or None

    def to_json(self) -> dict:
        return {
            "kind": self.KIND,
            "schema": self.SCHEMA,
            "configs": [c.to_json() for c in self.configs],
            "pareto": {t: list(v) for t, v in self.pareto.items()},
            "best": dict(self.best),
            "closest": dict(self.closest),
            "budgets": {t: limits_to_json(v) for t, v in self.limits.items()},
            "pipelines": dict(self.pipelines),
            "stats": self.stats.to_json(),
            "notes": list(self.notes),
            "out": str(self.out),
            # only with a teacher: a plain sweep's file keeps the keys it always had
            **(
                {"teacher": self.teacher.to_json(), "plain_pareto": {t: list(v) for t, v in self.plain_pareto.items()}}
                if self.teacher is not None
                else {}
            ),
        }

    @classmethod
    def from_json(cls, doc: Any, where: str = "sweep.json") -> SweepResult:
        """Strict read; a ``sweep.json`` of edgetransfer 0.1.0 (no ``kind``/``schema``) reads as schema 1.

        ``targets`` is not written: it is the order of ``pareto``'s keys."""
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: expected a mapping", fix="pass the sweep.json a sweep wrote")
        if "kind" not in doc:  # written before sweep.json carried a kind (same keys otherwise)
            doc = {"kind": cls.KIND, "schema": 1, **doc}
        if doc.get("kind") != cls.KIND or doc.get("schema") != cls.SCHEMA:
            raise ConfigError(
                f"{where}: kind {doc.get('kind')!r} schema {doc.get('schema')!r}; this edgetransfer reads "
                f"{cls.KIND} schema {cls.SCHEMA}",
                fix="re-create it with this version of edgetransfer (run the sweep again: finished work is reused)",
            )
        keys = {f.name for f in fields(cls)} - {"limits", "targets"} | {"budgets", "kind", "schema"}
        required = keys - {"pipelines", "notes", "teacher", "plain_pareto"}  # optional: added later
        if set(doc) - keys or required - set(doc):
            raise ConfigError(
                f"{where}: SweepResult has unknown keys {sorted(set(doc) - keys)} / missing keys "
                f"{sorted(required - set(doc))}",
                fix="re-create the file with this version of edgetransfer",
            )
        return cls(
            configs=tuple(SweepPoint.from_json(c, f"{where}.configs[{i}]") for i, c in enumerate(doc["configs"])),
            targets=tuple(doc["pareto"]),
            pareto={t: tuple(v) for t, v in doc["pareto"].items()},
            best=dict(doc["best"]),
            closest=dict(doc["closest"]),
            limits={t: limits_from_json(v, f"{where}.budgets.{t}") for t, v in doc["budgets"].items()},
            stats=SweepStats.from_json(doc["stats"], f"{where}.stats"),
            out=Path(doc["out"]),
            pipelines=dict(doc.get("pipelines", {})),
            notes=tuple(doc.get("notes", ())),
            teacher=None if doc.get("teacher") is None else SweepTeacher.from_json(doc["teacher"], f"{where}.teacher"),
            plain_pareto={t: tuple(v) for t, v in doc.get("plain_pareto", {}).items()},
        )


# -- the pipeline file -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSpec(Record):
    """``export:`` of a pipeline file."""

    formats: tuple[str, ...] = ("tflite", "onnx")
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    calibration: str = "auto"
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    max_accuracy_drop: float | None = None  # int8: search recipes within this many points (quantization doctor)
    qat_epochs: int = 0  # int8: quantization-aware training epochs before writing (export --qat --qat-epochs N)


@dataclass(frozen=True)
class ValidateSpec(Record):
    """``validate:`` of a pipeline file."""

    targets: tuple[str, ...] = ("host-cpu", "pixel4-cpu", "pixel4-gpu", "edgetpu")
    budget_s: float = 1.0
    # validate --tune / --bf16 / --profile (edgetransfer.evaluation.speed.SpeedOptions), host targets only
    tune: bool = False
    bf16: bool = False
    profile: bool = False


@dataclass(frozen=True)
class CheckSpec(Record):
    """``check:`` of a pipeline file: the budgets one exported file must meet on one target."""

    artifact: str = "model_int8_iouint8.tflite"
    target: str = "host-cpu"
    max_latency_ms: float | None = None
    max_latency_ratio: float | None = None
    reference: str | None = None
    max_accuracy_drop: float | None = 1.0
    max_size_mb: float | None = None
    max_disagreement: float | None = None  # runner targets whose device runs the images: % of top-1 changed

    def budget(self) -> Budget:
        return Budget(
            latency_p90_ms=self.max_latency_ms,
            latency_ratio=self.max_latency_ratio,
            accuracy_drop=self.max_accuracy_drop,
            size_mb=self.max_size_mb,
            disagreement=self.max_disagreement,
        )


@dataclass(frozen=True)
class SweepSpec(Record):
    """``sweep:``: a model search before training (:func:`edgetransfer.sweep`); empty lists take its defaults."""

    backbones: tuple[str, ...] = ()
    image_sizes: tuple[int, ...] = ()
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    targets: tuple[str, ...] = ("host-cpu",)
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None
    teacher: str | None = None  # "auto" or a finished run: distil the smaller configurations from it
    bf16: bool = False  # fp32 files also run in bf16 on host targets whose CPU has it (sweep --bf16)

    def budget(self) -> Budget:
        return Budget(
            latency_p90_ms=self.max_latency_ms, accuracy_drop=self.max_accuracy_drop, size_mb=self.max_size_mb
        )


@dataclass(frozen=True)
class PipelineFile(Record):
    """A ``pipeline.yaml`` as data: what :meth:`to_yaml` writes is what the pipeline reader reads.

    ``train`` holds :class:`~edgetransfer.training.TrainConfig` fields by name (only those set),
    ``comment`` the lines written as ``#`` comments above the document (not read back).
    """

    data: str
    train: dict[str, Any]
    export: ExportSpec
    validate: ValidateSpec
    check: CheckSpec | None = None
    sweep: SweepSpec | None = None
    out: str = "pipeline-out"
    comment: tuple[str, ...] = ()

    def document(self) -> dict:
        """The YAML mapping, in the order a person writes it (data, out, then the stages), without
        the comment and without absent sections."""
        doc = self.to_json()
        doc.pop("comment")
        order = ("data", "out", "sweep", "train", "export", "validate", "check")
        return {k: doc[k] for k in order if doc[k] is not None}

    def to_yaml(self) -> str:
        import yaml

        head = "".join(f"# {line}\n" for line in self.comment)
        return head + yaml.safe_dump(self.document(), sort_keys=False, default_flow_style=False)


@dataclass(frozen=True)
class PipelineState(Record):
    """``pipeline-state.json``: the input fingerprint of each stage the pipeline file last ran."""

    KIND: ClassVar[str] = "edgetransfer.pipeline-state"
    SCHEMA: ClassVar[int] = 1

    train: str | None = None
    export: str | None = None

    @classmethod
    def from_json(cls, doc: Any, where: str = "pipeline-state.json") -> PipelineState:
        if isinstance(doc, dict) and "kind" not in doc:  # written before it was a record: {"train": fp, ...}
            doc = {"kind": cls.KIND, "schema": cls.SCHEMA, **doc}
        return super().from_json(doc, where)
