"""``edgetransfer run PIPELINE.yaml``: data -> train -> export -> validate -> check in one file.

Each stage's inputs are fingerprinted (:class:`~edgetransfer.records.PipelineState`, written as
``pipeline-state.json``); a stage whose fingerprint matches the last run is skipped. The run
stops at the first failed stage with that stage's exit code. The stages themselves are
:mod:`.stages`, the same functions the sweep calls; the file's sections are the records
:class:`~edgetransfer.records.ExportSpec` and its siblings, so a file the sweep writes from a
:class:`~edgetransfer.records.PipelineFile` reads back field for field.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import data as data_lib
from .. import isa, strict_yaml
from ..errors import ConfigError, EdgeTransferError
from ..evaluation.speed import SpeedOptions
from ..exporter.quantization import QuantRecipe
from ..io import locked, write_json
from ..records import CheckSpec, ExportSpec, PipelineState, SweepResult, SweepSpec, ValidateSpec
from ..training import TrainConfig
from . import stages

if TYPE_CHECKING:
    from ..records.export import ExportedArtifact
    from ..training import TrainedModel

__all__ = ["CheckSpec", "ExportSpec", "Flow", "FlowResult", "SweepSpec", "ValidateSpec", "run"]


@dataclass(frozen=True)
class Flow:
    """A whole pipeline, validated when built (unknown keys name the file and key)."""

    data: str
    out: str = "pipeline-out"
    train: TrainConfig = TrainConfig()
    export: ExportSpec = ExportSpec()
    validate: ValidateSpec = ValidateSpec()
    check: CheckSpec | None = CheckSpec()
    sweep: SweepSpec | None = None
    base: str = field(default=".", repr=False)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Flow:
        """Read and check a pipeline file: every key's type and range before any work starts."""
        path = Path(path)
        raw = strict_yaml.load_file(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError("a pipeline file must be a YAML mapping", path=path, fix="see examples/pipeline.yaml")
        sections = {"train": TrainConfig, "export": ExportSpec, "validate": ValidateSpec, "check": CheckSpec}
        sections["sweep"] = SweepSpec
        _known(raw, {f.name for f in fields(cls)} - {"base"}, path, "")
        kwargs: dict = {}
        for key, value in raw.items():
            if key in sections and value is not None:
                _known(value, {f.name for f in fields(sections[key])}, path, f"{key}.")
                typed = {k: _typed(sections[key], k, v, path, f"{key}.{k}") for k, v in value.items()}
                try:
                    value = sections[key](**typed)
                except ConfigError as exc:  # a range check of the section: say which file
                    raise ConfigError(f"{key}: {exc.problem}", path=path, fix=exc.fix) from None
            elif key in ("data", "out"):
                value = strict_yaml.want_str(value, key, path)
            kwargs[key] = value
        if "data" not in kwargs:
            raise ConfigError("missing 'data' (the image folder)", path=path, fix="add data: path/to/images")
        flow = _anchor_target_files(cls(**kwargs, base=str(path.parent)))
        _check_names(flow, path)
        return flow

    def resolve(self, p: str) -> Path:
        return Path(p) if Path(p).is_absolute() else Path(self.base) / p


def _anchor_target_files(flow: Flow) -> Flow:
    """Target profiles named by a relative path are read beside the pipeline file, as ``data`` and
    ``out`` are, not from wherever the command happens to run."""
    from .. import targets

    def anchored(name: str) -> str:
        return str(flow.resolve(name)) if targets.is_path(name) else name

    flow = replace(flow, validate=replace(flow.validate, targets=tuple(anchored(t) for t in flow.validate.targets)))
    if flow.check is not None:
        flow = replace(flow, check=replace(flow.check, target=anchored(flow.check.target)))
    if flow.sweep is not None:
        flow = replace(flow, sweep=replace(flow.sweep, targets=tuple(anchored(t) for t in flow.sweep.targets)))
    return flow


def _typed(cls, name: str, value, path: Path, key: str):
    """``value`` checked against the annotation of ``cls.name`` (int, float, bool, str, tuple[str, ...])."""
    hint = str(typing.get_type_hints(cls)[name])
    if value is None:
        if "None" in hint:
            return None
        raise ConfigError(f"key '{key}' must not be empty", path=path, fix="give a value or remove the key")
    if hint.startswith("tuple[int"):  # sweep.image_sizes
        items = value if isinstance(value, list) else [value]
        return tuple(strict_yaml.want_int(v, key, path, min=1) for v in items)
    if hint.startswith("tuple"):
        return strict_yaml.want_str_list(value, key, path)
    if "bool" in hint:
        if not isinstance(value, bool):
            raise ConfigError(
                f"key '{key}' must be true or false, not {value!r}", path=path, fix="write true or false"
            )
        return value
    if "int" in hint:
        return strict_yaml.want_int(value, key, path, min=0)
    if "float" in hint:
        return strict_yaml.want_number(value, key, path, min=0)
    return strict_yaml.want_str(value, key, path)


def _check_names(flow: Flow, path: Path) -> None:
    """Formats, precisions and targets that exist, and budgets that make sense, before any training."""
    from .. import targets
    from ..exporter import formats

    try:
        for f in flow.export.formats:
            formats.get(f)
        for p in flow.export.precisions:
            QuantRecipe(p)
        for t in flow.validate.targets:
            targets.get(t)
        if flow.check is not None:
            targets.get(flow.check.target)
            flow.check.budget()
        if flow.sweep is not None:
            from .grid import plan_grid

            s = flow.sweep
            plan_grid(s.backbones or None, s.image_sizes or None, s.precisions, s.targets)
            s.budget()
    except ConfigError as exc:
        raise ConfigError(exc.problem, path=exc.path or path, fix=exc.fix) from None


def _known(raw, known: set, path: Path, where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where or 'pipeline'}' must be a mapping", path=path, fix="see examples/pipeline.yaml")
    for k in raw:
        if k not in known:
            raise ConfigError(f"unknown key '{where}{k}'", path=path, fix=f"known keys: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class FlowResult:
    run: TrainedModel
    artifacts: tuple[ExportedArtifact, ...]
    report: Any  # edgetransfer.records.ValidationReport
    verdict: Any | None  # edgetransfer.gate.Verdict
    report_path: Path
    skipped: tuple[str, ...]
    sweep: SweepResult | None = None  # when the pipeline has a sweep: section

    @property
    def exit_code(self) -> int:
        return int(self.verdict.exit_code) if self.verdict else 0


def _fp(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def read_state(out: Path) -> PipelineState:
    """``out/pipeline-state.json`` (one written before it was a record reads too); none: nothing skipped."""
    p = out / "pipeline-state.json"
    if not p.exists():
        return PipelineState()
    try:
        return PipelineState.read(p)
    except EdgeTransferError:
        return PipelineState()  # unreadable or from another version: every stage runs again


def _save_state(out: Path, state: PipelineState) -> None:
    write_json(out / "pipeline-state.json", state.to_json())


def run(flow: Flow, log=print) -> FlowResult:
    """Run every stage, skipping those whose inputs did not change."""
    out = flow.resolve(flow.out)
    out.mkdir(parents=True, exist_ok=True)
    # a second run of the same file would clear the first's run and export folders (issue 37)
    with locked(out, "pipeline run", remove=True), data_lib.checked_once():
        return _run(flow, out, log)


def _run(flow: Flow, out: Path, log) -> FlowResult:
    from .. import report as report_lib

    state, skipped = read_state(out), []
    data_dir = flow.resolve(flow.data)
    ds = data_lib.load(data_dir, val_split=flow.train.val_split, seed=flow.train.seed)
    searched = _sweep_stage(flow, flow.sweep, data_dir, out, log) if flow.sweep is not None else None
    run_dir = out / "run"
    fp_train = _fp(ds.fingerprint(), asdict(flow.train))
    if state.train == fp_train and (run_dir / "manifest.json").exists():
        from ..training import TrainedModel

        trained = TrainedModel.from_dir(run_dir)
        skipped.append("train")
    else:
        trained = stages.train(data_dir, flow.train, run_dir)
        state = replace(state, train=fp_train)
        _save_state(out, state)
    log(
        f"train     {trained.manifest.workflow}: val accuracy {trained.val_accuracy:.4f}"
        f"{' (skipped: unchanged)' if 'train' in skipped else ''}"
    )
    arts = _export_stage(flow, trained, out, state, fp_train, skipped, log)
    v = flow.validate
    options = SpeedOptions(profile=v.profile, tune=v.tune, bf16=v.bf16)
    rep = stages.validate(arts, data_dir, v.targets, budget_s=v.budget_s, options=options)
    verdict = _check_stage(flow, out, data_dir)
    path = report_lib.write(rep, out / "report.html", verdict)
    report_lib.write(rep, out / "report.json", verdict)
    return FlowResult(trained, tuple(arts), rep, verdict, path, tuple(skipped), searched)


def _sweep_stage(flow: Flow, s: SweepSpec, data_dir: Path, out: Path, log) -> SweepResult:
    """The ``sweep:`` stage: resumable by itself (finished configurations under ``out/sweep`` are
    skipped); a target with no configuration within budget stops the run with exit 1."""
    from .sweep import BudgetNotMetError, sweep

    res = sweep(
        data_dir,
        backbones=s.backbones or None,
        image_sizes=s.image_sizes or None,
        precisions=s.precisions,
        targets=s.targets,
        max_latency_ms=s.max_latency_ms,
        max_size_mb=s.max_size_mb,
        max_accuracy_drop=s.max_accuracy_drop,
        out=out / "sweep",
        train_config=flow.train,
        teacher=s.teacher,
        bf16=s.bf16,
    )
    for t, i in res.best.items():
        if i is not None:
            log(f"sweep     {t}: {res.configs[i].name} (accuracy {res.configs[i].accuracy:.4f}) -> {res.pipelines[t]}")
    log(f"sweep     {res.stats.computed} computed, {res.stats.reused} reused; report {out / 'sweep' / 'report.html'}")
    why = res.failure()
    if why:
        raise BudgetNotMetError(why, path=out / "sweep", fix="relax the budgets or widen the sweep: grid")
    return res


def _export_stage(flow: Flow, trained, out: Path, state: PipelineState, upstream: str, skipped: list, log) -> list:
    exp_dir = out / "export"
    profiles = _profiles(flow)
    # the targets' CPUs choose the int8 weights' width: another machine's host-cpu is another export
    fp = _fp(upstream, asdict(flow.export), sorted(isa.saturating_targets(profiles)))
    if state.export == fp and (exp_dir / "manifest.json").exists():
        arts = stages.exported(exp_dir)
        skipped.append("export")
    else:
        stages.clear(exp_dir)
        e = flow.export
        arts = stages.export(
            trained,
            e.formats,
            e.precisions,
            exp_dir,
            calibration=e.calibration,
            calibration_size=e.calibration_size,
            max_accuracy_drop=e.max_accuracy_drop,
            qat_epochs=e.qat_epochs,
            targets=profiles,
        )
        _save_state(out, replace(state, export=fp))
    log(f"export    {len(arts)} files{' (skipped: unchanged)' if 'export' in skipped else ''}")
    return arts


def _profiles(flow: Flow) -> list:
    """The profiles the flow validates and checks on: the files are made for them (their CPUs' ``isa``)."""
    from .. import targets

    names = list(flow.validate.targets) if flow.validate is not None else []
    names += [flow.check.target] if flow.check is not None else []
    return [targets.get(n) for n in dict.fromkeys(names)]


def _check_stage(flow: Flow, out: Path, data_dir: Path):
    c = flow.check
    if c is None:
        return None
    ref = out / "export" / c.reference if c.reference else None
    return stages.check(out / "export" / c.artifact, c.target, data_dir, c.budget(), reference=ref)
