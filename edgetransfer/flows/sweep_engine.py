"""The sweep's engine: one backbone's points trained, exported, validated and recorded in order, resumable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import data as data_lib
from .. import memo as memo_lib
from .. import targets as targets_lib
from .._version import __version__
from ..errors import EdgeTransferError
from ..evaluation import speed as speed_lib
from ..exporter import formats
from ..io import write_json
from ..records import Grid, SweepPoint, SweepState, SweepStats, TargetLatency
from ..records.flows import BF16
from ..records.vocab import Precision
from ..training import TrainConfig
from . import executors, picks, stages
from .grid import SweepPlan

FORMAT = picks.FORMAT  # every mobile target runs it; one format keeps the grid readable


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
