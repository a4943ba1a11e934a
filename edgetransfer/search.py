"""Model search: backbone x input size x precision against device budgets, as a Pareto front.

For each backbone x input size one run is trained with the ``features`` workflow (pooled
features are cached per backbone/weights/size/cut/policy/file, so a second sweep, or a second
precision, never recomputes them), exported to TFLite at each precision and validated on the
held-out split and on every target. Per target the sweep reports the Pareto front (accuracy
up, p50 latency down) and picks the most accurate configuration within the budgets, and
writes a ``pipeline.yaml`` that reproduces the pick.

Every finished configuration is one JSON file under ``<out>/configs`` written atomically, keyed
by everything that decides its figures (data fingerprint, training settings, precision,
target profiles); a rerun of the same command skips those, reuses finished runs and exports,
and says what changed when the grid or the data did.

The module is ``search`` (not ``sweep``) because the public function is ``sweep``: a public
name in ``edgetransfer`` never hides a submodule of the same name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import backbones
from . import data as data_lib
from . import memo as memo_lib
from . import targets as targets_lib
from ._version import __version__
from .errors import EXIT_BUDGET, ConfigError, EdgeTransferError
from .io import atomic_write, write_json
from .quantization import QuantRecipe
from .training import TrainConfig
from .training.rundir import locked

LADDER = (128, 160, 192, 224)
DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")
FORMAT = "tflite"  # every mobile target runs it; one format keeps the grid readable
Progress = Callable[[str], None]


class BudgetNotMetError(EdgeTransferError):
    """No configuration of a sweep meets a target's budgets (exit 1)."""

    exit_code = EXIT_BUDGET


@dataclass(frozen=True)
class Limits:
    """Budgets a pick must meet on one target; ``None`` is not checked.

    Latency is judged on p90, as target profiles and ``check`` do; accuracy drop is in points
    below the configuration's own float model.
    """

    latency_ms: float | None = None
    size_mb: float | None = None
    accuracy_drop: float | None = None

    @classmethod
    def for_target(cls, t, latency_ms=None, size_mb=None, accuracy_drop=None) -> Limits:
        """The profile's budgets, each overridden by the given value when not ``None``."""
        b = t.budgets
        pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
        return cls(pick(latency_ms, b.latency_p90_ms), pick(size_mb, b.size_mb), pick(accuracy_drop, b.accuracy_drop))

    def to_json(self) -> dict:
        return {
            "max_latency_ms": self.latency_ms,
            "max_size_mb": self.size_mb,
            "max_accuracy_drop": self.accuracy_drop,
        }

    def describe(self) -> str:
        parts = [
            f"p90 <= {self.latency_ms:g} ms" if self.latency_ms is not None else "",
            f"size <= {self.size_mb:g} MB" if self.size_mb is not None else "",
            f"drop <= {self.accuracy_drop:g} points" if self.accuracy_drop is not None else "",
        ]
        return ", ".join(p for p in parts if p) or "no budgets"

    def excess(self, p: SweepPoint, target: str) -> float:
        """How far ``p`` is beyond these limits on ``target``: 0 within, else the summed relative overshoot."""
        lat = p.latency[target]
        over = 0.0
        if self.latency_ms is not None:
            over += max(0.0, lat.p90_ms / self.latency_ms - 1)
        if self.size_mb is not None:
            over += max(0.0, p.size_bytes / 1e6 / self.size_mb - 1)
        if self.accuracy_drop is not None:
            over += max(0.0, (p.accuracy_drop - self.accuracy_drop) / max(self.accuracy_drop, 1.0))
        return over


@dataclass(frozen=True)
class TargetLatency:
    p50_ms: float
    p90_ms: float
    provenance: str  # measured | on-device | estimated
    runtime: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SweepPoint:
    """One configuration and its figures (accuracy as a fraction, drop in points)."""

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

    @property
    def name(self) -> str:
        return f"{self.backbone} {self.image_size} {self.precision}"

    def to_json(self) -> dict:
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "precision": self.precision,
            "accuracy": self.accuracy,
            "float_accuracy": self.float_accuracy,
            "accuracy_drop": self.accuracy_drop,
            "size_bytes": self.size_bytes,
            "macs": self.macs,
            "latency": {t: v.to_json() for t, v in self.latency.items()},
            "artifact": self.artifact,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, doc: dict) -> SweepPoint:
        lat = {t: TargetLatency(**v) for t, v in doc["latency"].items()}
        return cls(**{**doc, "latency": lat})


@dataclass(frozen=True)
class SweepStats:
    """What this call computed and what it reused."""

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
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: every configuration, the fronts and the picks per target."""

    configs: tuple[SweepPoint, ...]
    targets: tuple[str, ...]
    pareto: dict[str, tuple[int, ...]]
    best: dict[str, int | None]
    closest: dict[str, int | None]
    limits: dict[str, Limits]
    stats: SweepStats
    out: Path
    pipelines: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_BUDGET if any(v is None for v in self.best.values()) else 0

    def failure(self) -> str | None:
        """Why the sweep failed its budgets (naming the closest configuration), or ``None``."""
        bad = [t for t, v in self.best.items() if v is None]
        if not bad:
            return None
        parts = []
        for t in bad:
            c = self.closest.get(t)
            near = "no configuration runs there" if c is None else f"closest is #{c} {self._summary(c, t)}"
            parts.append(f"no configuration meets the budget on {t} ({self.limits[t].describe()}); {near}")
        return "; ".join(parts)

    def _summary(self, i: int, t: str) -> str:
        p = self.configs[i]
        lat = p.latency[t]
        return (
            f"{p.name} (accuracy {p.accuracy:.4f}, drop {p.accuracy_drop:.2f} points, "
            f"p90 {lat.p90_ms:.2f} ms {lat.provenance}, {p.size_bytes / 1e6:.2f} MB)"
        )

    def to_json(self) -> dict:
        return {
            "configs": [c.to_json() for c in self.configs],
            "pareto": {t: list(v) for t, v in self.pareto.items()},
            "best": dict(self.best),
            "closest": dict(self.closest),
            "budgets": {t: v.to_json() for t, v in self.limits.items()},
            "pipelines": dict(self.pipelines),
            "stats": self.stats.to_json(),
            "notes": list(self.notes),
            "out": str(self.out),
        }


def pareto_front(points: Sequence[SweepPoint], target: str) -> tuple[int, ...]:
    """Indices of the points not dominated on ``target`` (higher accuracy, lower p50), fastest first.

    A point is dominated when another is at least as accurate and at least as fast, and
    strictly better in one of the two. Points without a latency on ``target`` are left out.
    """
    on = [i for i, p in enumerate(points) if target in p.latency]

    def dominated(i: int) -> bool:
        a, la = points[i].accuracy, points[i].latency[target].p50_ms
        return any(
            points[j].accuracy >= a
            and points[j].latency[target].p50_ms <= la
            and (points[j].accuracy > a or points[j].latency[target].p50_ms < la)
            for j in on
        )

    return tuple(sorted((i for i in on if not dominated(i)), key=lambda i: points[i].latency[target].p50_ms))


def pick(points: Sequence[SweepPoint], target: str, limits: Limits) -> tuple[int | None, int | None]:
    """``(best, closest)`` on ``target``: the most accurate point within ``limits`` (ties: faster,
    then smaller), and the point nearest to meeting them (for the message when none does)."""
    on = [i for i, p in enumerate(points) if target in p.latency]
    order = lambda i: (-points[i].accuracy, points[i].latency[target].p50_ms, points[i].size_bytes)  # noqa: E731
    ok = sorted((i for i in on if limits.excess(points[i], target) == 0), key=order)
    closest = min(on, key=lambda i: (limits.excess(points[i], target), order(i)), default=None)
    return (ok[0] if ok else None), closest


@dataclass(frozen=True)
class Grid:
    """The checked grid: per backbone its sizes, the precisions, the target profiles."""

    sizes: dict[str, tuple[int, ...]]
    precisions: tuple[str, ...]
    targets: tuple  # TargetProfile, ...

    def configs(self) -> list[tuple[str, int, str]]:
        return [(b, s, p) for b, sizes in self.sizes.items() for s in sizes for p in self.precisions]

    def to_json(self) -> dict:
        return {
            "sizes": {b: list(s) for b, s in self.sizes.items()},
            "precisions": list(self.precisions),
            "targets": [t.name for t in self.targets],
        }


def default_backbones() -> tuple[str, ...]:
    """Backbones whose ImageNet weights ship offline (no download needed)."""
    return tuple(n for n in backbones.names() if backbones.get(n).weights_source == "offline")


def default_sizes(name: str) -> tuple[int, ...]:
    """The ladder 128/160/192/224 plus the native size, none above the native size (upsampling
    past the resolution the weights were trained at costs latency for little accuracy)."""
    spec = backbones.get(name)
    lo, hi = spec.allowed_sizes
    return tuple(sorted({s for s in (*LADDER, spec.input_size) if lo <= s <= min(hi, spec.input_size)}))


def plan_grid(
    backbone_names: Sequence[str] | None,
    image_sizes: Sequence[int] | None,
    precisions: Sequence[str],
    target_names: Sequence[str],
    targets_dir: str | Path | None = None,
) -> Grid:
    """Check every name and size before any work; the empty grid is an error too.

    Raises:
        ConfigError: an unknown backbone, target or precision, a size a backbone refuses, a
            precision no target runs, or an empty grid (exit 2).
    """
    names = tuple(dict.fromkeys(backbone_names or default_backbones()))
    for n in names:
        backbones.get(n)
    if image_sizes:
        sizes = {n: tuple(sorted({backbones.get(n).check_size(int(s)) for s in image_sizes})) for n in names}
    else:
        sizes = {n: default_sizes(n) for n in names}
    precs = tuple(dict.fromkeys(precisions))
    for p in precs:
        QuantRecipe(p)
    if not target_names:
        raise ConfigError("no target to sweep against", fix="pass --target NAME (see `edgetransfer targets list`)")
    tgts = tuple(targets_lib.get(t, targets_dir) for t in dict.fromkeys(target_names))
    for t in tgts:
        if FORMAT not in t.formats:
            raise ConfigError(
                f"target {t.name} does not run {FORMAT} files; the sweep exports {FORMAT}", fix="drop it"
            )
    for p in precs:
        if all(t.can_run(FORMAT, p) for t in tgts):
            raise ConfigError(
                f"no target runs {p} {FORMAT} models", fix=f"drop --precision {p} or add a target that runs it"
            )
    grid = Grid(sizes, precs, tgts)
    if not grid.configs():
        raise ConfigError("the grid is empty", fix="give at least one --backbone, --image-size and --precision")
    return grid


def _fp(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _slug(*parts) -> str:
    return "-".join(str(p) for p in parts)


def _eta(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class _Engine:
    """Runs the grid group by group (one training run per backbone x size), persisting each configuration."""

    def __init__(self, out: Path, data_dir: Path, data_fp: str, base: TrainConfig, grid: Grid, opts: dict, say):
        self.out, self.data_dir, self.data_fp, self.base, self.grid = out, data_dir, data_fp, base, grid
        self.opts, self.say = opts, say
        self.stats: dict = {k: 0 for k in SweepStats.__dataclass_fields__ if k != "seconds"}
        self.target_keys = [(t.name, _profile_digest(t)) for t in grid.targets]
        self.memo = memo_lib.for_sweep()

    def cfg(self, backbone: str, size: int) -> TrainConfig:
        return dataclasses.replace(self.base, backbone=backbone, image_size=size, workflow="features", unfreeze="auto")

    def key(self, b: str, s: int, p: str) -> str:
        cfg = asdict(self.cfg(b, s))
        return _fp(__version__, self.data_fp, cfg, p, self.opts["calibration_size"], self.target_keys)

    def finished(self, b: str, s: int, p: str) -> SweepPoint | None:
        """The persisted configuration if it matches this grid and data, else ``None`` (stale ones counted)."""
        path = self.out / "configs" / f"{_slug(b, s, p)}.json"
        try:
            point = SweepPoint.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # absent, or unreadable: recompute
        if point.key != self.key(b, s, p):
            self.stats["stale"] += 1
            return None
        return point

    def run(self) -> list[SweepPoint]:
        todo = self.grid.configs()
        found = {c: self.finished(*c) for c in todo}
        left = sum(v is None for v in found.values())
        self.stats.update(configs=len(todo), reused=len(todo) - left)
        if left < len(todo):
            self.say(f"resuming: {len(todo) - left} of {len(todo)} configurations already finished in {self.out}")
        spent, done = 0.0, 0
        (self.out / "configs").mkdir(parents=True, exist_ok=True)
        for b, sizes in self.grid.sizes.items():
            for s in sizes:
                pending = [p for p in self.grid.precisions if found[(b, s, p)] is None]
                if not pending:
                    continue
                eta = _eta(spent / done * left) if done else "after the first configuration"
                self.say(f"[{done + 1}/{done + left}] {b} {s} px {'/'.join(pending)}: running (ETA {eta})")
                start = time.perf_counter()
                for point in self.group(b, s, pending):
                    write_json(self.out / "configs" / f"{_slug(b, s, point.precision)}.json", point.to_json())
                    found[(b, s, point.precision)] = point
                    self.say(f"      {point.name}: accuracy {point.accuracy:.4f}, drop {point.accuracy_drop:.2f}")
                spent += time.perf_counter() - start
                done, left = done + len(pending), left - len(pending)
                self.stats["computed"] += len(pending)
        return [found[c] for c in todo]  # type: ignore[misc]

    def group(self, b: str, s: int, precisions: list[str]) -> list[SweepPoint]:
        from .backbones import graph

        run, fresh = self.train(b, s)
        arts = self.export(run, b, s, precisions, fresh)
        macs = graph.count_macs(run.load_model())
        return self.validate(arts, macs, b, s)

    def train(self, b: str, s: int):
        """The finished run of ``b`` at ``s`` if it matches data and settings, else a new one."""
        from .training import TrainedModel, train

        cfg, run_dir = self.cfg(b, s), self.out / "runs" / _slug(b, s)
        settings = asdict(cfg)
        want = json.dumps(settings, sort_keys=True)
        try:
            run = TrainedModel.from_dir(run_dir)
            # the manifest's config also records what training added (the recipe, the runtime): compare settings only
            had = {k: run.manifest.config.get(k) for k in settings}
            if run.manifest.data.fingerprint == self.data_fp and json.dumps(had, sort_keys=True) == want:
                self.stats["runs_reused"] += 1
                return run, False
        except EdgeTransferError:
            pass
        for p in (run_dir, run_dir.with_name(run_dir.name + ".partial"), self.out / "exports" / _slug(b, s)):
            shutil.rmtree(p, ignore_errors=True)
        self.say(f"      training {b} at {s} px (features workflow)")
        run = train(self.data_dir, cfg, out=run_dir)
        cache = run.manifest.feature_cache or {}
        self.stats["trained"] += 1
        self.stats["feature_hits"] += int(cache.get("hits", 0))
        self.stats["feature_misses"] += int(cache.get("misses", 0))
        return run, True

    def export(self, run, b: str, s: int, precisions: list[str], fresh: bool) -> list:
        """TFLite files of ``precisions`` (traced once per group); files already exported are reused."""
        from .exporter import ExportedArtifact, export

        folder = self.out / "exports" / _slug(b, s)
        have: dict = {}
        if not fresh:
            for m in folder.glob("*.manifest.json"):
                try:
                    a = ExportedArtifact.from_manifest(m)
                except EdgeTransferError:
                    continue
                have.setdefault(a.precision, a)
        missing = [p for p in precisions if p not in have]
        self.stats["exports_reused"] += len(precisions) - len(missing)
        if missing:
            self.say(f"      exporting {FORMAT} {'/'.join(missing)}")
            n = self.opts["calibration_size"]
            recipes = [QuantRecipe.named(p, calibration_size=n) for p in missing]
            for a in export(run, [FORMAT], recipes, out=folder, memo=self.memo):
                have[a.precision] = a
            self.stats["exported"] += len(missing)
        return [have[p] for p in precisions]

    def validate(self, arts: list, macs: int, b: str, s: int) -> list[SweepPoint]:
        from .evaluation import validate

        names = [t.path if str(t.path).endswith((".yaml", ".yml")) else t.name for t in self.grid.targets]
        self.say(f"      validating on the held-out split and {', '.join(t.name for t in self.grid.targets)}")
        rep = validate(
            [a.path for a in arts],
            self.data_dir,
            names,
            targets_dir=self.opts["targets_dir"],
            budget_s=self.opts["budget_s"],
            skip_incompatible=True,
            memo=self.memo,
        )
        points = []
        for a in arts:
            recs = [r for r in rep.records if Path(r.artifact) == Path(a.path)]
            lat = {
                r.target: TargetLatency(
                    round(r.latency.p50, 4), round(r.latency.p90, 4), r.latency.provenance, r.runtime
                )
                for r in recs
                if r.latency is not None
            }
            main = next((r for r in recs if not r.memory), recs[0])
            points.append(
                SweepPoint(
                    b,
                    s,
                    a.precision,
                    float(main.accuracy or 0.0),
                    float(rep.reference.accuracy or 0.0),
                    float(main.accuracy_drop or 0.0),
                    a.size_bytes,
                    int(macs),
                    lat,
                    str(Path(a.path).relative_to(self.out) if Path(a.path).is_relative_to(self.out) else a.path),
                    self.key(b, s, a.precision),
                )
            )
        return points


def _profile_digest(t) -> str:
    try:
        return hashlib.sha256(Path(t.path).read_bytes()).hexdigest()[:16]
    except OSError:
        return _fp(repr(t))


def _compare_state(out: Path, grid: Grid, data_fp: str, base: TrainConfig) -> list[str]:
    """Say what changed since the last sweep in ``out`` (grid, data, settings); record the new state."""
    path = out / "sweep-state.json"
    now: dict[str, Any] = {"grid": grid.to_json(), "data": data_fp, "train": asdict(base), "version": __version__}
    notes = []
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict):
        if before.get("data") != data_fp:
            notes.append("the data changed since the last sweep here: its finished configurations are recomputed")
        if before.get("train") != json.loads(json.dumps(now["train"])):
            notes.append("the training settings changed: finished configurations are recomputed")
        old = before.get("grid", {})
        old_set = {(b, s, p) for b, ss in old.get("sizes", {}).items() for s in ss for p in old.get("precisions", [])}
        new_set = set(grid.configs())
        if old_set != new_set or old.get("targets") != now["grid"]["targets"]:
            moved = old.get("targets") != now["grid"]["targets"]
            notes.append(
                f"the grid changed: {len(new_set - old_set)} configuration(s) added, {len(old_set - new_set)} "
                "dropped (kept on disk, not reported)"
                + (f"; targets {old.get('targets')} -> {now['grid']['targets']}" if moved else "")
            )
    write_json(path, now)
    return notes


def sweep(
    data_dir: str | Path,
    *,
    backbones: Sequence[str] | None = None,
    image_sizes: Sequence[int] | None = None,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    targets: Sequence[str] = ("host-cpu",),
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    max_accuracy_drop: float | None = None,
    out: str | Path = "sweep-out",
    train_config: TrainConfig | None = None,
    calibration_size: int = 100,
    budget_s: float = 1.0,
    targets_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Train, export and validate every backbone x size x precision; the front and pick per target.

    Args:
        data_dir: image folder (class sub-folders, optionally train/ and val/).
        backbones: names (default: those with offline ImageNet weights).
        image_sizes: input sides (default per backbone: 128/160/192/224 and its native size, capped there).
        precisions: TFLite precisions (fp32, fp16, dynamic, int8, int16x8).
        targets: target profile names (or YAML paths).
        max_latency_ms, max_size_mb, max_accuracy_drop: override every target's profile budgets
            (latency is judged on p90; accuracy drop in points below the configuration's float model).
        out: sweep folder; finished configurations there are reused by a rerun.
        train_config: training settings; backbone, size and workflow (features) are set per run.
        calibration_size: int8 calibration images.
        budget_s: seconds of latency measurement per file on a host target.
        targets_dir: extra folder of target profiles.
        progress: called with one line per step (which configuration, ETA); default silent.

    Returns:
        A :class:`SweepResult`; ``exit_code`` is 1 when a target has no configuration within budget.

    Raises:
        ConfigError, DataError: unknown names, an empty grid, bad budgets or data, before any training.
        ToolchainError: training, conversion or a runtime failed (exit 3).
    """
    from .records import Budget

    say = progress or (lambda _msg: None)
    grid = plan_grid(backbones, image_sizes, precisions, targets, targets_dir)
    Budget(latency_p90_ms=max_latency_ms, accuracy_drop=max_accuracy_drop, size_mb=max_size_mb)
    base = train_config or TrainConfig()
    ds = data_lib.load(data_dir, val_split=base.val_split, seed=base.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out, "sweep"):  # two sweeps in one folder would train and export over each other
        start = time.perf_counter()
        notes = _compare_state(out, grid, ds.fingerprint(), base)
        for n in notes:
            say(f"note: {n}")
        opts = {"calibration_size": calibration_size, "budget_s": budget_s, "targets_dir": targets_dir}
        engine = _Engine(out, Path(data_dir), ds.fingerprint(), base, grid, opts, say)
        points = engine.run()
        if engine.memo is not None:
            engine.stats.update(memo_hits=engine.memo.hits, memo_misses=engine.memo.misses)
        stats = SweepStats(**engine.stats, seconds=round(time.perf_counter() - start, 2))
        names = tuple(t.name for t in grid.targets)
        limits = {t.name: Limits.for_target(t, max_latency_ms, max_size_mb, max_accuracy_drop) for t in grid.targets}
        picks = {t: pick(points, t, limits[t]) for t in names}
        result = SweepResult(
            tuple(points),
            names,
            {t: pareto_front(points, t) for t in names},
            {t: v[0] for t, v in picks.items()},
            {t: v[1] for t, v in picks.items()},
            limits,
            stats,
            out,
            notes=tuple(notes),
        )
        n_train = len(ds.split("train")) or len(ds.files)
        pipelines = {
            t.name: str(_write_pipeline(result, t, Path(data_dir), base, calibration_size, n_train))
            for t in grid.targets
            if result.best[t.name] is not None
        }
        result = dataclasses.replace(result, pipelines=pipelines)
        write_json(out / "sweep.json", result.to_json())
        from .report import sweep as sweep_report

        sweep_report.write_html(result, out / "report.html")
        return result


def _workflow_for(backbone: str, size: int, cfg: TrainConfig, n_train: int):
    """What ``training.config.choose`` picks for this much data (the sweep itself ranks with features)."""
    from .training.config import FEATURES_MAX, choose

    auto = dataclasses.replace(cfg, backbone=backbone, image_size=size, workflow="auto", unfreeze="auto")
    if n_train <= FEATURES_MAX:
        return choose(n_train, auto, 0, 0)
    from .backbones import graph

    base = backbones.build(backbone, weights="none", input_size=size)
    points = {c.name: c.layer for c in graph.cut_points(base)}
    layers = [layer.name for layer in base.layers]
    after = layers.index(points["stride16"]) + 1 if "stride16" in points else 0
    return choose(n_train, auto, len(layers), len(layers) - after)


def _write_pipeline(
    result: SweepResult, t, data_dir: Path, cfg: TrainConfig, calibration_size: int, n_train: int
) -> Path:
    """``<out>/picks/<target>/pipeline.yaml``: train, export, validate and check the pick for ``t``."""
    p = result.configs[result.best[t.name]]  # type: ignore[index]
    lim, lat = result.limits[t.name], p.latency[t.name]
    plan = _workflow_for(p.backbone, p.image_size, cfg, n_train)
    q = json.dumps
    target = q(t.path) if str(t.path).endswith((".yaml", ".yml")) and t.origin == "path" else t.name
    lines = [
        f"# edgetransfer run pipeline.yaml -- reproduces the sweep's pick for {t.name}: {p.name}",
        f"# accuracy {p.accuracy:.4f} (drop {p.accuracy_drop:.2f} points), p50 {lat.p50_ms:.2f} ms {lat.provenance},",
        f"# {p.size_bytes / 1e6:.2f} MB, {p.macs / 1e6:.0f}M MACs; budgets: {lim.describe()}",
        f"# workflow: {plan.workflow} ({plan.reason})",
        f"data: {q(str(data_dir.resolve()))}",
        "out: pipeline-out",
        "train:",
        f"  backbone: {p.backbone}",
        f"  weights: {q(cfg.weights)}",
        f"  image_size: {p.image_size}",
        f"  workflow: {plan.workflow}",
        *([f"  unfreeze: {q(cfg.unfreeze)}"] if plan.workflow == "fine-tune" else []),
        f"  epochs: {cfg.epochs}",
        f"  fine_tune_epochs: {cfg.fine_tune_epochs}",
        f"  batch_size: {cfg.batch_size}",
        f"  learning_rate: {cfg.learning_rate}",
        f"  cut_at: {cfg.cut_at}",
        f"  policy: {cfg.policy}",
        f"  seed: {cfg.seed}",
        f"  val_split: {cfg.val_split}",
        "export:",
        f"  formats: [{FORMAT}]",
        f"  precisions: [{p.precision}]",
        f"  calibration_size: {calibration_size}",
        "validate:",
        f"  targets: [{target}]",
        "check:",
        f"  artifact: {Path(p.artifact).name}",
        f"  target: {target}",
        f"  max_latency_ms: {_yaml_num(lim.latency_ms)}",
        f"  max_accuracy_drop: {_yaml_num(lim.accuracy_drop)}",
        f"  max_size_mb: {_yaml_num(lim.size_mb)}",
    ]
    path = result.out / "picks" / t.name / "pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, "\n".join(lines) + "\n")


def _yaml_num(v: float | None) -> str:
    return "null" if v is None else f"{v:g}"
