"""Model search: backbone x input size x precision against device budgets, as a Pareto front.

For each backbone x input size one run is trained with the ``features`` workflow (pooled
features are cached per backbone/weights/size/cut/policy/file, so a second sweep, or a second
precision, never recomputes them), exported to TFLite at each precision and validated on the
held-out split and on every target, through the same stage functions as the pipeline file
(:mod:`.stages`). Per target the sweep reports the Pareto front (accuracy up, p50 latency down)
and picks the most accurate configuration within the budgets (:mod:`.pareto`), and writes a
``pipeline.yaml`` that reproduces the pick (:mod:`.picks`).

Every finished configuration is one JSON file under ``<out>/configs`` written atomically, keyed
by everything that decides its figures (data fingerprint, training settings, precision,
target profiles); a rerun of the same command skips those, reuses finished runs and exports,
and says what changed when the grid or the data did.

With ``teacher="auto"`` (``sweep --teacher auto``) the plain grid runs first; its group whose float
model scored best on the held-out split is the teacher, and every group with fewer MACs runs once
more as a student distilled from it (``runs/<b>-<s>-distilled``, its own configurations and keys),
through the same engine and executors; the result keeps both, and both fronts.

The groups run one after another in this process (``executor="local"``), or as tasks of a
process pool or a Ray cluster (:mod:`.executors`): a task is a :class:`GroupJob` in and
:func:`run_group`'s JSON-able records out, and the targets whose latency is measured on a machine
(``measure: host``, runners) are validated here after every task, never inside one.

The public function is ``edgetransfer.sweep``; this module is ``edgetransfer.flows.sweep`` and
``flows/__init__`` does not re-export the function, so no public name hides this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import data as data_lib
from .. import formats
from .. import memo as memo_lib
from .. import speed as speed_lib
from .. import targets as targets_lib
from .._version import __version__
from ..errors import EXIT_BUDGET, EdgeTransferError, ToolchainError
from ..io import write_json
from ..records import (
    Budget,
    Grid,
    SweepPoint,
    SweepResult,
    SweepState,
    SweepStats,
    SweepTeacher,
    TargetLatency,
)
from ..records.flows import BF16
from ..records.vocab import Precision
from ..training import TrainConfig
from ..training.rundir import locked
from . import executors, pareto, picks, stages
from .grid import SweepPlan, plan_grid, profile_budget

DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")
FORMAT = picks.FORMAT  # every mobile target runs it; one format keeps the grid readable
Progress = Callable[[str], None]


class BudgetNotMetError(EdgeTransferError):
    """No configuration of a sweep meets a target's budgets (exit 1)."""

    exit_code = EXIT_BUDGET


def _fp(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _slug(*parts: Any) -> str:
    return "-".join(str(p) for p in parts)


def _eta(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _profile_digest(t: targets_lib.TargetProfile) -> str:
    try:
        return hashlib.sha256(Path(t.path).read_bytes()).hexdigest()[:16]
    except OSError:
        return _fp(repr(t))


def _execution(tag: str) -> tuple[str, str]:
    """``(precision, execution)`` of a configuration tag: ``fp32`` or ``fp32-bf16`` (:attr:`SweepPoint.tag`)."""
    precision, _, execution = tag.partition("-")
    return precision, execution


def bf16_format() -> str | None:
    """The format whose fp32 files a bf16-capable runtime runs (the registries say which), or ``None``."""
    from ..runtime import spec as runtime_spec

    for name in formats.file_formats():
        spec = formats.get(name)
        if Precision.FP32 in spec.precisions and any(
            r in runtime_spec.names() and runtime_spec.get(r).bf16 for r in spec.runtimes
        ):
            return name
    return None


def bf16_plan(profiles, say: Progress) -> tuple[bool, list[str]]:
    """Whether ``sweep --bf16`` can add bf16 executions here, and the notes saying where it cannot."""
    notes = []
    fmt = bf16_format()
    runtimes = speed_lib.bf16_runtimes(list(formats.get(fmt).runtimes)) if fmt else []
    hosts = [t.name for t in profiles if speed_lib.host_target(t)]
    skipped = [t.name for t in profiles if not speed_lib.host_target(t)]
    if not runtimes:
        why = (
            "no installed runtime" if speed_lib.bf16_units() else "this CPU has no bf16 units (avx512_bf16 / amx_bf16)"
        )
        notes.append(f"--bf16: {why} runs fp32 files in bf16 here: no bf16 configuration")
    elif not hosts:
        notes.append(
            f"--bf16: none of the targets ({', '.join(skipped)}) is timed on this host: no bf16 configuration"
        )
    elif skipped:
        notes.append(f"--bf16: bf16 runs on the host targets only ({', '.join(hosts)}), not on {', '.join(skipped)}")
    for n in notes:
        say(f"note: {n}")
    return bool(runtimes and hosts), notes


def _target_arg(t: targets_lib.TargetProfile) -> str:
    """How to name ``t`` to ``validate``: its file when it came from one passed by path."""
    return str(t.path) if str(t.path).endswith((".yaml", ".yml")) else t.name


@dataclass(frozen=True)
class GroupJob:
    """One task of a spread sweep: a backbone x size group and everything its process needs (picklable)."""

    out: Path
    data_dir: Path
    data_fp: str
    base: TrainConfig
    plan: SweepPlan
    opts: dict
    backbone: str
    size: int
    precisions: tuple[str, ...]
    targets: tuple[str, ...]  # the (estimated) targets validated in the task; the others in the sweep's process
    teacher: tuple[str, str] | None = None  # (run folder, model digest): the group is a distilled student


def run_group(job: GroupJob) -> dict:
    """A task: train, export and validate one group in this process; JSON-able records back.

    ``points`` are :meth:`SweepPoint.to_json` documents (empty where no target is validated in the
    task), ``stats`` the counters to add to the sweep's, ``seconds`` what the group took here."""
    start = time.perf_counter()
    with data_lib.checked_once():
        quiet = lambda _m: None  # noqa: E731
        engine = _Engine(job.out, job.data_dir, job.data_fp, job.base, job.plan, job.opts, quiet, job.teacher)
        profiles = [t for t in job.plan.profiles if _target_arg(t) in job.targets]
        points, macs = engine.group_macs(job.backbone, job.size, list(job.precisions), profiles)
    stats = {k: v for k, v in engine.stats.items() if v}
    if engine.memo is not None:
        stats.update(memo_hits=engine.memo.hits, memo_misses=engine.memo.misses)
    return {
        "points": [p.to_json() for p in points],
        "stats": stats,
        "macs": macs,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _interleave(groups: list) -> list:
    """Groups ordered size-major (lite0 160, lite1 160, lite0 224, ...): tasks running side by side
    then mostly hold different backbones, so two of them rarely convert the same weights at once."""
    by_backbone: dict[str, list] = {}
    for g in groups:
        by_backbone.setdefault(g[0], []).append(g)
    rounds = max((len(v) for v in by_backbone.values()), default=0)
    return [v[i] for i in range(rounds) for v in by_backbone.values() if i < len(v)]


class _Engine:
    """Runs the grid group by group (one training run per backbone x size), persisting each configuration.

    With ``teacher`` (its run folder and model digest) every group it runs is a student distilled
    from that run, kept apart from the plain one: ``runs/<b>-<s>-distilled``,
    ``configs/<b>-<s>-<p>-distilled.json``, keyed by the teacher's model digest too.
    """

    def __init__(
        self,
        out: Path,
        data_dir: Path,
        data_fp: str,
        base: TrainConfig,
        plan: SweepPlan,
        opts: dict,
        say,
        teacher: tuple[str, str] | None = None,
    ):
        self.out, self.data_dir, self.data_fp, self.base, self.plan = out, data_dir, data_fp, base, plan
        self.opts, self.say, self.teacher = opts, say, teacher
        self.stats: dict = {k: 0 for k in SweepStats.__dataclass_fields__ if not k.endswith("seconds")}
        self.target_keys = [(t.name, _profile_digest(t)) for t in plan.profiles]
        self.memo = memo_lib.for_sweep()
        self.failed: list[str] = []  # groups a task could not finish, with why
        self.notes: list[str] = []
        # sweep --bf16: every fp32 configuration also as its fp32 file run in bf16 (tag fp32-bf16);
        # decided once by the caller (the CPU, the runtimes, the targets) and passed in opts
        self.bf16 = bool(opts.get("bf16"))

    def tags(self) -> list[str]:
        """The grid's precisions, plus ``fp32-bf16`` after fp32 with ``--bf16``."""
        out = []
        for p in self.plan.grid.precisions:
            out.append(p)
            if self.bf16 and p == Precision.FP32:
                out.append(f"{p}-{BF16}")
        return out

    def configs(self) -> list[tuple[str, int, str]]:
        return [(b, s, p) for b, sizes in self.plan.grid.sizes.items() for s in sizes for p in self.tags()]

    def cfg(self, backbone: str, size: int) -> TrainConfig:
        teacher = self.teacher[0] if self.teacher else None
        return dataclasses.replace(
            self.base, backbone=backbone, image_size=size, workflow="features", unfreeze="auto", teacher=teacher
        )

    def slug(self, *parts: Any) -> str:
        """The file or folder name of a group (``b, s``) or configuration (``b, s, p``)."""
        return _slug(*parts) + ("-distilled" if self.teacher else "")

    def key(self, b: str, s: int, p: str) -> str:
        cfg = asdict(self.cfg(b, s))
        if self.teacher:  # the teacher's model, not where its folder lies, decides the student
            cfg["teacher"] = self.teacher[1]
        return _fp(__version__, self.data_fp, cfg, p, self.opts["calibration_size"], self.target_keys)

    def finished(self, b: str, s: int, p: str) -> SweepPoint | None:
        """The persisted configuration if it matches this grid and data, else ``None`` (stale ones counted)."""
        path = self.out / "configs" / f"{self.slug(b, s, p)}.json"
        try:
            point = SweepPoint.from_json(json.loads(path.read_text()), str(path))
        except (OSError, ValueError, TypeError, KeyError, EdgeTransferError):
            return None  # absent, unreadable or from an older schema: recompute
        if point.key != self.key(b, s, p):
            self.stats["stale"] += 1
            return None
        return point

    def run(
        self, executor: str = "local", jobs: int | None = None, address: str | None = None, only=None
    ) -> list[SweepPoint]:
        """Every configuration of the grid (``only``: of those backbone x size groups), finished or computed."""
        todo = [c for c in self.configs() if only is None or c[:2] in only]
        found = {c: self.finished(*c) for c in todo}
        left = sum(v is None for v in found.values())
        self.stats.update(configs=len(todo), reused=len(todo) - left)
        if left < len(todo):
            self.say(f"resuming: {len(todo) - left} of {len(todo)} configurations already finished in {self.out}")
        (self.out / "configs").mkdir(parents=True, exist_ok=True)
        groups = [
            (b, s, [p for p in self.tags() if found[(b, s, p)] is None])
            for b, sizes in self.plan.grid.sizes.items()
            for s in sizes
            if only is None or (b, s) in only
        ]
        groups = [g for g in groups if g[2]]
        if executor == "local":
            self._run_here(groups, found, left)
        else:
            self._run_spread(groups, found, left, executor, jobs, address)
        return [found[c] for c in todo if found[c] is not None]  # type: ignore[misc]

    def _save(self, b: str, s: int, points: list[SweepPoint], took: float, found: dict) -> None:
        for point in points:
            point = dataclasses.replace(point, seconds=round(took / len(points), 2))
            write_json(self.out / "configs" / f"{self.slug(b, s, point.tag)}.json", point.to_json())
            found[(b, s, point.tag)] = point
            self.say(f"      {point.name}: accuracy {point.accuracy:.4f}, drop {point.accuracy_drop:.2f}")
        self.stats["computed"] += len(points)

    def _run_here(self, groups: list, found: dict, left: int) -> None:
        """Group after group in this process (``--executor local``), as the sweep always ran."""
        spent, done = 0.0, 0
        for b, s, pending in groups:
            eta = _eta(spent / done * left) if done else "after the first configuration"
            self.say(f"[{done + 1}/{done + left}] {b} {s} px {'/'.join(pending)}: running (ETA {eta})")
            start = time.perf_counter()
            points = self.group(b, s, pending)
            took = time.perf_counter() - start
            self._save(b, s, points, took, found)
            spent += took
            done, left = done + len(pending), left - len(pending)

    def _run_spread(self, groups: list, found: dict, left: int, executor: str, jobs, address) -> None:
        """Groups as tasks of ``executor``; targets measured on a host (``measure: host`` or a
        runner) are validated afterwards here, one file at a time on a machine no task loads."""
        here = [t for t in self.plan.profiles if t.measure != "estimate"]
        away = tuple(_target_arg(t) for t in self.plan.profiles if t.measure == "estimate")
        groups = _interleave(groups)  # two tasks at once rarely convert the same backbone's weights
        tasks = [GroupJob(self.out, self.data_dir, self.data_fp, self.base, self.plan, self.opts, b, s, tuple(p), away,
                          self.teacher) for b, s, p in groups]  # fmt: skip
        total, start, state = left, time.perf_counter(), {"done": 0}
        width = f"{jobs or 'one per CPU'}" if executor == "processes" else (address or "a local cluster")
        self.say(f"{len(tasks)} group(s) of {total} configuration(s) on --executor {executor} ({width})")
        waiting: list[tuple[GroupJob, dict]] = []

        def finished(o: executors.Outcome) -> None:
            job = tasks[o.index]
            n = len(job.precisions)
            if o.error is not None:
                self.failed.append(f"{job.backbone} {job.size} px {'/'.join(job.precisions)} failed: {o.error}")
                self.say(f"      {self.failed[-1]} (after {o.attempts} attempt(s))")
            else:
                for k, v in o.result["stats"].items():
                    self.stats[k] = self.stats.get(k, 0) + v
                if here:
                    waiting.append((job, o.result))
                else:
                    pts = [SweepPoint.from_json(d, "task result") for d in o.result["points"]]
                    self._save(job.backbone, job.size, pts, o.result["seconds"], found)
            state["done"] += n
            spent = time.perf_counter() - start
            eta = _eta(spent / state["done"] * (total - state["done"])) if state["done"] < total else "0s"
            self.say(f"[{state['done']}/{total}] {job.backbone} {job.size} px: {'failed' if o.error else 'done'} "
                     f"(ETA {eta}{' before host latency' if here else ''})")  # fmt: skip

        executors.run(executor, run_group, tasks, finished, workers=jobs, address=address)
        if here and waiting:
            self.say(f"      host latency: measured here on {platform.node()}, one file at a time, after every task")
            self.notes.append(f"host-target latency measured in the sweep's own process on {platform.node()}")
        for job, res in waiting:
            t0 = time.perf_counter()
            points = self.measure_here(job, res, here)
            self._save(job.backbone, job.size, points, res["seconds"] + time.perf_counter() - t0, found)

    def measure_here(self, job: GroupJob, res: dict, here: list) -> list[SweepPoint]:
        """The task's points with the latencies of the host targets, measured in this process (a bf16
        configuration only runs on host targets: its point is made here)."""
        arts = self.on_disk(job.backbone, job.size, list(job.precisions))
        mine = {p.tag: p for p in self.validate(arts, res["macs"], job.backbone, job.size, here)}
        task = {p.tag: p for p in (SweepPoint.from_json(d, "task result") for d in res["points"])}
        out = []
        for tag in job.precisions:
            if tag in task and tag in mine:
                out.append(dataclasses.replace(task[tag], latency={**task[tag].latency, **mine[tag].latency}))
            elif tag in mine or tag in task:
                out.append(mine.get(tag) or task[tag])
        return out

    def on_disk(self, b: str, s: int, tags: list[str]) -> dict[str, Any]:
        """``{tag: file}`` exported earlier for this group (bf16: the fp32 file in :func:`bf16_format`)."""
        folder = self.out / "exports" / self.slug(b, s)
        have = {a.precision: a for a in stages.exported(folder, indexed=False)}
        alt = (
            {a.precision: a for a in stages.exported(folder / BF16, indexed=False)} if (folder / BF16).is_dir() else {}
        )
        return {t: (alt if _execution(t)[1] else have)[_execution(t)[0]] for t in tags}

    def group(self, b: str, s: int, precisions: list[str], profiles=None) -> list[SweepPoint]:
        points, _ = self.group_macs(b, s, precisions, profiles)
        return points

    def group_macs(self, b: str, s: int, precisions: list[str], profiles=None) -> tuple[list[SweepPoint], int]:
        """Train, export and validate one group (on ``profiles``; none: no validation, no points)."""
        from ..backbones import graph

        run, fresh = self.train(b, s)
        plain = [t for t in precisions if not _execution(t)[1]]
        arts = dict(zip(plain, self.export(run, b, s, plain, fresh), strict=True))
        bf16 = [t for t in precisions if _execution(t)[1]]
        if bf16:  # the fp32 file a bf16 runtime runs, in its own folder (the group's holds TFLite files)
            fp32 = self.export(run, b, s, [Precision.FP32.value], fresh, bf16_format(), BF16)[0]
            arts.update({t: fp32 for t in bf16})
        macs = graph.count_macs(run.load_model())
        profiles = self.plan.profiles if profiles is None else profiles
        return (self.validate(arts, macs, b, s, profiles) if profiles else []), macs

    def train(self, b: str, s: int):
        """The finished run of ``b`` at ``s`` if it matches data and settings, else a new one."""
        cfg, run_dir = self.cfg(b, s), self.out / "runs" / self.slug(b, s)
        run = stages.finished_run(run_dir, cfg, self.data_fp)
        if run is not None and self.teacher:  # the same folder may hold a retrained teacher
            had = (run.manifest.config.get("distill") or {}).get("teacher", {}).get("model_sha256")
            run = run if had == self.teacher[1] else None
        if run is not None:
            self.stats["runs_reused"] += 1
            return run, False
        stages.clear(self.out / "exports" / self.slug(b, s))
        how = f"distilled from {self.teacher[0]}" if self.teacher else "features workflow"
        self.say(f"      training {b} at {s} px ({how})")
        run = stages.train(self.data_dir, cfg, run_dir)
        cache = run.manifest.feature_cache or {}
        self.stats["trained"] += 1
        self.stats["distilled"] += int(self.teacher is not None)
        self.stats["feature_hits"] += int(cache.get("hits", 0))
        self.stats["feature_misses"] += int(cache.get("misses", 0))
        return run, True

    def export(
        self, run, b: str, s: int, precisions: list[str], fresh: bool, fmt: str | None = FORMAT, sub: str = ""
    ) -> list:
        """Files of ``precisions`` in ``fmt`` (traced once per group); files already exported are reused."""
        folder = self.out / "exports" / self.slug(b, s) / sub
        have: dict = {}
        if not fresh and folder.is_dir():
            for a in stages.exported(folder, indexed=False):
                have.setdefault(a.precision, a)
        missing = [p for p in precisions if p not in have]
        self.stats["exports_reused"] += len(precisions) - len(missing)
        if missing:
            self.say(f"      exporting {fmt} {'/'.join(missing)}")
            n = self.opts["calibration_size"]
            for a in stages.export(run, [str(fmt)], missing, folder, calibration_size=n, memo=self.memo):
                have[a.precision] = a
            self.stats["exported"] += len(missing)
        return [have[p] for p in precisions]

    def validate(self, arts: dict[str, Any], macs: int, b: str, s: int, profiles) -> list[SweepPoint]:
        """Points of ``arts`` (``{tag: file}``); a bf16 configuration is validated on the host targets only."""
        plain = [a for t, a in arts.items() if not _execution(t)[1]]
        hosts = [t for t in profiles if speed_lib.host_target(t)]
        bf16 = [a for t, a in arts.items() if _execution(t)[1]][:1]  # one fp32 file per group
        points = []
        for files, tgts, opts in (
            (plain, profiles, None),
            (bf16 if hosts else [], hosts, speed_lib.SpeedOptions(bf16=True)),
        ):
            if not files:
                continue
            where = ", ".join(t.name for t in tgts)
            self.say(f"      validating on the held-out split and {where}{' in bf16' if opts else ''}")
            rep = stages.validate(
                files,
                self.data_dir,
                [_target_arg(t) for t in tgts],
                targets_dir=self.opts["targets_dir"],
                budget_s=self.opts["budget_s"],
                memo=self.memo,
                options=opts,
            )
            execution = BF16 if opts else ""
            made = [p for a in files if (p := self.point(a, rep, macs, b, s, execution)) is not None]
            if len(made) < len(files):  # counted as a failed configuration: say why
                self.failed.append(
                    f"{b} {s} px: validation made no {execution or 'plain'} record of {files[0].path.name}"
                )
            points += made
        return points

    def point(self, a, rep, macs: int, b: str, s: int, execution: str = "") -> SweepPoint | None:
        """One configuration from the report's records of file ``a`` run in ``execution`` (the fastest
        runtime's per target when several ran it), only the fields the records promise; ``None``: no record."""
        recs = [r for r in rep.records if Path(r.artifact) == Path(a.path) and r.execution == execution]
        recs.sort(key=lambda r: float(r.latency.p50) if r.latency is not None else float("inf"), reverse=True)
        lat = {
            str(r.target): TargetLatency(
                round(float(r.latency.p50), 4),
                round(float(r.latency.p90), 4),
                str(getattr(r.latency.provenance, "value", r.latency.provenance)),
                r.latency.detail.get("runtime"),
            )
            for r in recs
        }  # sorted slowest first: the fastest record of each target is the one kept
        if not recs:
            return None
        main = recs[-1]  # the fastest; every record of one file in one runtime holds the same accuracy
        path = Path(a.path)
        tag = f"{a.precision}-{execution}" if execution else str(a.precision)
        return SweepPoint(
            b,
            s,
            str(a.precision),
            float(main.accuracy),
            float(rep.reference.accuracy if rep.reference is not None else main.accuracy),
            float(main.accuracy_drop or 0.0),
            int(a.size_bytes),
            int(macs),
            lat,
            str(path.relative_to(self.out) if path.is_relative_to(self.out) else path),
            self.key(b, s, tag),
            teacher=self.teacher_name(),
            execution=execution,
        )

    def teacher_name(self) -> str:
        """The teacher's run folder as points record it: relative to the sweep folder when inside it."""
        if not self.teacher:
            return ""
        t = Path(self.teacher[0])
        return str(t.relative_to(self.out) if t.is_relative_to(self.out) else t)


def _compare_state(out: Path, grid: Grid, data_fp: str, base: TrainConfig) -> list[str]:
    """Say what changed since the last sweep in ``out`` (grid, data, settings); record the new state."""
    path = out / "sweep-state.json"
    now = SweepState(grid=grid, data=data_fp, train=json.loads(json.dumps(asdict(base))), version=__version__)
    notes = []
    try:
        before = json.loads(path.read_text())  # read loosely: a state from any version only feeds notes
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict):
        if before.get("data") != data_fp:
            notes.append("the data changed since the last sweep here: its finished configurations are recomputed")
        if before.get("train") != now.train:
            notes.append("the training settings changed: finished configurations are recomputed")
        old = before.get("grid", {})
        old_set = {(b, s, p) for b, ss in old.get("sizes", {}).items() for s in ss for p in old.get("precisions", [])}
        new_set = set(grid.configs())
        if old_set != new_set or old.get("targets") != list(grid.targets):
            moved = old.get("targets") != list(grid.targets)
            notes.append(
                f"the grid changed: {len(new_set - old_set)} configuration(s) added, {len(old_set - new_set)} "
                "dropped (kept on disk, not reported)"
                + (f"; targets {old.get('targets')} -> {list(grid.targets)}" if moved else "")
            )
    write_json(path, now.to_json())
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
    executor: str = "local",
    jobs: int | None = None,
    ray_address: str | None = None,
    teacher: str | Path | None = None,
    bf16: bool = False,
) -> SweepResult:
    """Train, export and validate every backbone x size x precision; the front and pick per target.

    Args:
        data_dir: image folder (class sub-folders, optionally train/ and val/).
        backbones: names (default: those with offline ImageNet weights).
        image_sizes: input sides (default per backbone: 128/160/192/224 and its native size, capped there).
        precisions: TFLite precisions (fp32, fp16, dynamic, int8, int16x8).
        targets: target profile names (or YAML paths).
        max_latency_ms: overrides every target's profile latency budget (judged on p90).
        max_size_mb: overrides every target's profile size budget.
        max_accuracy_drop: overrides every target's profile budget of accuracy drop, in points below
            the configuration's float model.
        out: sweep folder; finished configurations there are reused by a rerun.
        train_config: training settings; backbone, size and workflow (features) are set per run.
        calibration_size: int8 calibration images.
        budget_s: seconds of latency measurement per file on a host target.
        targets_dir: extra folder of target profiles.
        progress: called with one line per step (which configuration, ETA); default silent.
        executor: where the groups (one per backbone x size) run: ``local`` (this process, one
            after another), ``processes`` (a local pool of ``jobs`` processes) or ``ray`` (one Ray
            task each, on the cluster at ``ray_address``, else a local one); see
            :mod:`edgetransfer.flows.executors`. Latency on host targets is measured in this
            process after the tasks, never inside them.
        jobs: processes (``processes``), or CPUs of a local Ray cluster (``ray``).
        ray_address: an existing Ray cluster (``ray://host:10001`` or ``host:6379``), ``ray`` only.
        teacher: ``"auto"``: after the plain grid, the group whose float model scored best on the
            held-out split is the teacher, and every group with fewer MACs is trained once more,
            distilled from it (:mod:`edgetransfer.training.distill`, ``train_config``'s
            ``distill_*`` settings); a run folder: that run is the teacher. The result holds
            both the plain and the distilled configurations, the front of both
            (``pareto``, the picks) and of the plain ones alone (``plain_pareto``).
        bf16: every fp32 configuration is also exported in the format a bf16-capable runtime runs
            (:func:`bf16_format`) and validated in bf16 on the host targets, where this CPU has bf16
            units (``validate --bf16``): one more configuration (``execution="bf16"``, ``fp32 as bf16``)
            with its own accuracy and latency, on the front and in the picks like any other. Where
            the CPU, the runtimes or the targets cannot, a note says so and the sweep runs without.

    Returns:
        A :class:`~edgetransfer.records.SweepResult`; ``exit_code`` is 1 when a target has no
        configuration within budget (:func:`edgetransfer.flows.pareto.failure` says why).

    Raises:
        ConfigError, DataError: unknown names, an empty grid, bad budgets or data, before any training.
        ToolchainError: training, conversion or a runtime failed (exit 3).
    """
    say = progress or (lambda _msg: None)
    executors.check(executor, jobs, ray_address)
    if executor == "ray":
        executors.import_ray()  # the install hint before any training
    plan = plan_grid(backbones, image_sizes, precisions, targets, targets_dir)
    cli = Budget(latency_p90_ms=max_latency_ms, accuracy_drop=max_accuracy_drop, size_mb=max_size_mb)
    base = train_config or TrainConfig()
    out = Path(out)
    spread = {"executor": executor, "jobs": jobs, "address": ray_address}
    with data_lib.checked_once():
        ds = data_lib.load(data_dir, val_split=base.val_split, seed=base.seed)
        if teacher is not None and str(teacher) != "auto":  # a missing run or other classes: exit 2 now
            from ..training.distill import load_teacher

            load_teacher(teacher, ds.classes)
            teacher = Path(teacher).resolve()  # tasks may run in another working folder
        out.mkdir(parents=True, exist_ok=True)
        with locked(out, "sweep"):  # two sweeps in one folder would train and export over each other
            opts: dict[str, Any] = {
                "calibration_size": calibration_size,
                "budget_s": budget_s,
                "targets_dir": targets_dir,
            }
            bf16_notes: list[str] = []
            if bf16 and Precision.FP32 in plan.grid.precisions:
                opts["bf16"], bf16_notes = bf16_plan(plan.profiles, say)
            elif bf16:
                bf16_notes = ["--bf16: fp32 is not among the precisions: no bf16 configuration"]
                say(f"note: {bf16_notes[0]}")
            opts["notes"] = bf16_notes
            if targets_dir is not None:
                opts["targets_dir"] = str(Path(targets_dir).resolve())
            return _run(plan, cli, base, ds, Path(data_dir), out, opts, spread, say, teacher)


def _teacher(engine: _Engine, points: list[SweepPoint], teacher: str | Path) -> tuple[SweepTeacher, str] | None:
    """The teacher's record and run folder: the most accurate plain group (``auto``) or the run given."""
    from ..backbones import graph
    from ..training import TrainedModel

    if str(teacher) == "auto":
        group = pareto.teacher_group(points)
        if group is None:
            return None
        b, s = group
        best = next(p for p in points if (p.backbone, p.image_size) == group and not p.distilled)
        # trained by the plain grid; trained again only if its folder was removed since
        run = stages.finished_run(engine.out / "runs" / _slug(b, s), engine.cfg(b, s), engine.data_fp)
        run = run or engine.train(b, s)[0]
        rec = SweepTeacher(f"runs/{_slug(b, s)}", b, s, best.float_accuracy, "auto", best.macs)
        return rec, str(Path(run.run_dir).resolve())
    run = TrainedModel.from_dir(teacher)
    m = run.manifest
    rec = SweepTeacher(str(teacher), m.backbone, m.input_size, float(m.metrics.val_accuracy or 0.0), "given")
    return dataclasses.replace(rec, macs=graph.count_macs(run.load_model())), str(teacher)


def _distil(engine: _Engine, points: list[SweepPoint], teacher, spread, say) -> tuple[SweepTeacher | None, list]:
    """The distilled configurations: every group smaller (in MACs) than the teacher, trained from it."""
    from ..training.distill import load_teacher

    found = _teacher(engine, points, teacher)
    if found is None:
        engine.notes.append("--teacher auto: no plain configuration finished, so no teacher")
        return None, []
    rec, run_dir = found
    groups = pareto.students(points, rec.macs)
    if not groups:
        engine.notes.append(f"the teacher {rec.name} is the smallest configuration: nothing to distil")
        return rec, []
    say(
        f"teacher: {rec.name} (float accuracy {rec.accuracy:.4f}, {rec.chosen}); distilling "
        f"{len(groups)} smaller group(s) from it: {', '.join(f'{b} {s}' for b, s in sorted(groups))}"
    )
    student = _Engine(
        engine.out, engine.data_dir, engine.data_fp, engine.base, engine.plan, engine.opts, say,
        (run_dir, load_teacher(run_dir).digest),
    )  # fmt: skip
    distilled = student.run(only=groups, **spread)
    for k, v in student.stats.items():
        engine.stats[k] = engine.stats.get(k, 0) + v
    if student.memo is not None:
        engine.stats["memo_hits"] += student.memo.hits
        engine.stats["memo_misses"] += student.memo.misses
    engine.notes.extend(student.notes)
    engine.failed.extend(student.failed)
    return rec, distilled


def _run(plan, cli, base, ds, data_dir, out, opts, spread, say, teacher=None) -> SweepResult:
    start = time.perf_counter()
    calibration_size = opts["calibration_size"]
    notes = _compare_state(out, plan.grid, ds.fingerprint(), base)
    for n in notes:
        say(f"note: {n}")
    notes += opts.pop("notes", [])
    # absolute paths: a task may run in another working folder (Ray workers); the result and the
    # picks keep the paths as given
    engine = _Engine(out.resolve(), data_dir.resolve(), ds.fingerprint(), base, plan, opts, say)
    points = engine.run(**spread)
    n_plain = len(points)
    rec, distilled = _distil(engine, points, teacher, spread, say) if teacher is not None else (None, [])
    points += distilled
    if engine.memo is not None:  # added to what the tasks counted in their own processes
        engine.stats["memo_hits"] += engine.memo.hits
        engine.stats["memo_misses"] += engine.memo.misses
    notes += engine.notes + engine.failed
    if not points and engine.failed:
        raise ToolchainError(f"every configuration failed; first: {engine.failed[0]}", fix="see the lines above")
    stats = SweepStats(
        **engine.stats,
        seconds=round(time.perf_counter() - start, 2),
        compute_seconds=round(sum(p.seconds for p in points), 2),
    )
    names = plan.grid.targets
    limits = {t.name: Budget.merge(profile_budget(t), cli) for t in plan.profiles}
    chosen = {t: pareto.pick(points, t, limits[t]) for t in names}
    result = SweepResult(
        configs=tuple(points),
        targets=names,
        pareto={t: pareto.pareto_front(points, t) for t in names},
        best={t: v[0] for t, v in chosen.items()},
        closest={t: v[1] for t, v in chosen.items()},
        limits=limits,
        stats=stats,
        out=out,
        notes=tuple(notes),
        teacher=rec,
        plain_pareto={t: pareto.pareto_front(points[:n_plain], t) for t in names} if distilled else {},
    )
    n_train = len(ds.split("train")) or len(ds.files)
    written = {
        t.name: str(picks.write(result, t, data_dir, base, calibration_size, n_train))
        for t in plan.profiles
        if result.best[t.name] is not None
    }
    result = dataclasses.replace(result, pipelines=written)
    write_json(out / "sweep.json", result.to_json())
    from ..report import sweep as sweep_report

    sweep_report.write_html(result, out / "report.html")
    return result
