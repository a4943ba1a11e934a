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
process pool or a Ray cluster (:mod:`.executors`): a task is a :class:`.sweep_engine.GroupJob` in and
:func:`.sweep_engine.run_group`'s JSON-able records out, and the targets whose latency is measured on a machine
(``measure: host``, runners) are validated here after every task, never inside one.

The public function is ``edgetransfer.sweep``; this module is ``edgetransfer.flows.sweep`` and
``flows/__init__`` does not re-export the function, so no public name hides this module.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import data as data_lib
from ..errors import EXIT_BUDGET, EdgeTransferError, ToolchainError
from ..evaluation import speed as speed_lib
from ..exporter import formats
from ..io import write_json
from ..records import (
    DEFAULT_CALIBRATION_SIZE,
    Budget,
    SweepPoint,
    SweepResult,
    SweepStats,
    SweepTeacher,
)
from ..records.vocab import Precision
from ..training import TrainConfig
from ..training.rundir import locked
from . import executors, pareto, picks, stages
from .grid import plan_grid, profile_budget
from .sweep_engine import _compare_state, _Engine, _slug, bf16_format

DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")
Progress = Callable[[str], None]


class BudgetNotMetError(EdgeTransferError):
    """No configuration of a sweep meets a target's budgets (exit 1)."""

    exit_code = EXIT_BUDGET


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
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
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
