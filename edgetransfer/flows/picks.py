"""The sweep's picks as pipeline files: ``<out>/picks/<target>/pipeline.yaml``.

Each is a :class:`~edgetransfer.records.PipelineFile` serialised with ``yaml.safe_dump``;
:meth:`edgetransfer.flows.pipeline.Flow.from_yaml` reads back the same fields.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import backbones
from ..errors import ConfigError
from ..io import atomic_write
from ..records import CheckSpec, ExportSpec, PipelineFile, SweepResult, ValidateSpec
from ..targets import TargetProfile
from ..training import TrainConfig
from .pareto import describe

FORMAT = "tflite"  # the sweep exports one format: every mobile target runs it
# the TrainConfig settings a pick's pipeline file spells out (the rest keep their defaults)
TRAIN_KEYS = (
    "backbone",
    "weights",
    "image_size",
    "workflow",
    "unfreeze",
    "epochs",
    "fine_tune_epochs",
    "batch_size",
    "learning_rate",
    "cut_at",
    "policy",
    "seed",
    "val_split",
)


def folder_name(t: TargetProfile) -> str:
    """``t.name`` if it is one safe path component (the pick's folder under ``<out>/picks``).

    Raises:
        ConfigError: a name with a path separator, ``.``/``..``, a control character or
            nothing in it, which would write outside ``--out`` or make an odd folder (exit 2).
    """
    name = t.name
    bad = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or Path(name).is_absolute()
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )
    if bad:
        raise ConfigError(
            f"target profile name {name!r} is not a plain folder name (the sweep writes its pick under "
            "<out>/picks/<name>)",
            path=t.path,
            fix="name the profile with letters, digits, '-', '_' or '.' only",
        )
    return name


def workflow_for(backbone: str, size: int, cfg: TrainConfig, n_train: int):
    """What ``training.config.choose`` picks for this much data (the sweep itself ranks with features)."""
    from ..training.config import FEATURES_MAX, choose

    auto = dataclasses.replace(cfg, backbone=backbone, image_size=size, workflow="auto", unfreeze="auto")
    if n_train <= FEATURES_MAX:
        return choose(n_train, auto, 0, 0)
    from ..backbones import graph

    base = backbones.build(backbone, weights="none", input_size=size)
    points = {c.name: c.layer for c in graph.cut_points(base)}
    layers = [layer.name for layer in base.layers]
    after = layers.index(points["stride16"]) + 1 if "stride16" in points else 0
    return choose(n_train, auto, len(layers), len(layers) - after)


def target_reference(t: TargetProfile) -> str:
    """How a pick's pipeline file names ``t``: a profile file the user pointed at (``--target FILE``,
    ``--targets-dir``) by its absolute path, since a pipeline file resolves relative paths from its own
    folder (issue 37: the picks of ``--target profiles/x.yaml`` failed from anywhere else); others by name."""
    named_file = str(t.path).endswith((".yaml", ".yml")) and t.origin in ("path", "targets-dir")
    return str(Path(t.path).resolve()) if named_file else t.name


def pipeline_for(
    result: SweepResult, t: TargetProfile, data_dir: Path, cfg: TrainConfig, calibration_size: int, n_train: int
) -> PipelineFile:
    """The record of the pipeline file that trains, exports, validates and checks the pick for ``t``."""
    p = result.configs[result.best[t.name]]  # type: ignore[index]
    lim, lat = result.limits[t.name], p.latency[t.name]
    plan = workflow_for(p.backbone, p.image_size, cfg, n_train)
    target = target_reference(t)
    train = {k: getattr(cfg, k) for k in TRAIN_KEYS}
    train.update(backbone=p.backbone, image_size=p.image_size, workflow=plan.workflow)
    if plan.workflow != "fine-tune":
        del train["unfreeze"]
    if p.teacher:  # a distilled pick trains from the same teacher run (absolute: the file may move)
        train["teacher"] = str(Path(result.out, p.teacher).resolve())
    bf16 = bool(p.execution)
    return PipelineFile(
        data=str(data_dir.resolve()),
        train=train,
        export=ExportSpec(formats=(_format_of(p),), precisions=(p.precision,), calibration_size=calibration_size),
        validate=ValidateSpec(targets=(target,), bf16=bf16),
        check=CheckSpec(
            artifact=Path(p.artifact).name,
            target=target,
            # check loads the file as deployed by default (it has no bf16 switch): the bf16 latency is
            # judged on validate's bf16 record, not by a check that would time the fp32 execution
            max_latency_ms=None if bf16 else lim.latency_p90_ms,
            max_accuracy_drop=lim.accuracy_drop,
            max_size_mb=lim.size_mb,
        ),
        comment=(
            f"edgetransfer run pipeline.yaml -- reproduces the sweep's pick for {t.name}: {p.name}",
            f"accuracy {p.accuracy:.4f} (drop {p.accuracy_drop:.2f} points), p50 {lat.p50_ms:.2f} ms "
            f"{lat.provenance}{_runtime_note(p, lat.runtime)}, {p.size_bytes / 1e6:.2f} MB, "
            f"{p.macs / 1e6:.0f}M MACs; budgets: {describe(lim)}",
            f"workflow: {plan.workflow} ({plan.reason})",
            *(_bf16_comment(lat.runtime) if bf16 else ()),
        ),
    )


def _format_of(p) -> str:
    """The format of the pick's file: the sweep's, or the fp32 file a bf16 configuration ran."""
    from ..exporter import formats

    return formats.for_path(p.artifact).name if p.execution else FORMAT


def _runtime_note(p, runtime: str | None) -> str:
    return f" ({runtime}, fp32 file run in {p.execution})" if p.execution and runtime else ""


def _bf16_comment(runtime: str | None) -> tuple[str, ...]:
    """Where the bf16 execution is set: validate's ``bf16`` flag, and the runtime setting it loads."""
    from ..runtime import spec as runtime_spec

    setting = ", ".join(f"{k}={v}" for k, v in runtime_spec.get(runtime).bf16.items()) if runtime else "?"
    return (
        f"bf16 execution: validate: bf16: true runs the fp32 file on {runtime} with {setting} (a CPU with "
        "AVX512-BF16 or AMX); deploy it with the same setting",
        "check: no latency budget here: check times the file as deployed by default (fp32); the bf16 figure "
        "is validate's 'fp32 as bf16' record",
    )


def write(
    result: SweepResult, t: TargetProfile, data_dir: Path, cfg: TrainConfig, calibration_size: int, n_train: int
) -> Path:
    """Write ``<out>/picks/<target>/pipeline.yaml`` for ``t``'s pick; returns its path."""
    doc = pipeline_for(result, t, data_dir, cfg, calibration_size, n_train)
    path = Path(result.out) / "picks" / folder_name(t) / "pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, doc.to_yaml())
