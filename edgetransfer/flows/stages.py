"""The stage functions every flow calls: train -> export -> validate (-> check).

The pipeline file (:mod:`.pipeline`), the sweep (:mod:`.sweep`) and the quickstart
(:mod:`.quickstart`, through the pipeline file) run the stages through these functions only,
so a stage behaves the same whichever flow runs it. Each takes and returns the library's
objects (:class:`TrainedModel`, :class:`ExportedArtifact`, ``ValidationReport``, ``Verdict``)
and records (:class:`~edgetransfer.records.Budget`); none of them decides what to skip: that
is the flow's business (fingerprints for the pipeline file, keys per configuration for the sweep).

Heavy stage modules (training, export, evaluation, gate) are imported on first use, so
importing a flow stays TensorFlow-free.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EdgeTransferError
from ..records import DEFAULT_CALIBRATION_SIZE, Budget, ValidationReport, Verdict

if TYPE_CHECKING:
    from ..evaluation.speed import SpeedOptions
    from ..memo import Memo
    from ..records.export import ExportedArtifact
    from ..training import TrainConfig, TrainedModel


def clear(path: Path) -> None:
    """Remove ``path`` and its ``.partial`` twin (a stage rewrites its folder from scratch)."""
    for p in (path, path.with_name(path.name + ".partial")):
        shutil.rmtree(p, ignore_errors=True)


def train(data_dir: Path, cfg: TrainConfig, run_dir: Path) -> TrainedModel:
    """A new run of ``cfg`` on ``data_dir`` in ``run_dir`` (whatever was there is removed first)."""
    from ..training import train as train_run

    clear(run_dir)
    return train_run(data_dir, cfg, out=run_dir)


def finished_run(run_dir: Path, cfg: TrainConfig, data_fp: str) -> TrainedModel | None:
    """The run in ``run_dir`` if it trained ``cfg`` on data with fingerprint ``data_fp``, else ``None``.

    The manifest's config also records what training added (the recipe, the runtime), so
    only the settings of ``cfg`` are compared.
    """
    from ..training import TrainedModel

    try:
        run = TrainedModel.from_dir(run_dir)
    except EdgeTransferError:
        return None
    settings = asdict(cfg)
    had = {k: run.manifest.config.get(k) for k in settings}
    same = json.dumps(had, sort_keys=True) == json.dumps(settings, sort_keys=True)
    return run if run.manifest.data.fingerprint == data_fp and same else None


def export(
    run: TrainedModel,
    formats: Sequence[str],
    precisions: Sequence[str],
    out: Path,
    *,
    calibration: str | Path = "auto",
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    max_accuracy_drop: float | None = None,
    memo: Memo | None = None,
    qat_epochs: int = 0,
    targets: Sequence = (),
) -> list[ExportedArtifact]:
    """Every format x precision of ``run`` under ``out`` (the model is traced once), for ``targets`` (profiles:
    their CPUs' instruction sets choose the int8 weights' width, :mod:`edgetransfer.isa`)."""
    from ..exporter.artifacts import export as export_run
    from ..exporter.quantization import QuantRecipe

    recipes = [QuantRecipe.named(p, calibration_size=calibration_size, qat_epochs=qat_epochs) for p in precisions]
    kwargs: dict[str, Any] = {"calibration": calibration, "max_accuracy_drop": max_accuracy_drop, "targets": targets}
    if memo is not None:
        kwargs["memo"] = memo
    return list(export_run(run, list(formats), recipes, out=out, **kwargs))


def exported(folder: Path, *, indexed: bool = True) -> list[ExportedArtifact]:
    """The files an earlier :func:`export` left in ``folder``.

    ``indexed``: those the folder's index (``manifest.json``, the last export's files in order)
    lists; else every file with a readable manifest (a sweep exports a folder's precisions over
    several calls), unreadable ones skipped.
    """
    from ..records.export import ExportedArtifact

    if indexed:
        names = json.loads((folder / "manifest.json").read_text())["artifacts"]
        return [ExportedArtifact.from_manifest(folder / n) for n in names]
    arts = []
    for m in sorted(folder.glob("*.manifest.json")):
        try:
            arts.append(ExportedArtifact.from_manifest(m))
        except EdgeTransferError:
            continue
    return arts


def validate(
    artifacts: Sequence[ExportedArtifact],
    data_dir: Path,
    targets: Sequence[str],
    *,
    targets_dir: str | Path | None = None,
    budget_s: float = 1.0,
    memo: Memo | None = None,
    options: SpeedOptions | None = None,
) -> ValidationReport:
    """The validation report of ``artifacts`` on ``targets`` (pairs a target cannot run are skipped);
    ``options``: profiles, tuned settings, bf16 execution (the pipeline file's ``validate:`` flags,
    ``sweep --bf16``)."""
    from .validate import validate as validate_files

    return validate_files(
        [a.path for a in artifacts],
        data_dir,
        list(targets),
        targets_dir=targets_dir,
        budget_s=budget_s,
        skip_incompatible=True,
        report_path=None,
        memo=memo,
        options=options,
    )


def check(artifact: Path, target: str, data_dir: Path, budget: Budget, *, reference: Path | None = None) -> Verdict:
    """The verdict of ``artifact`` on ``target``: the pipeline file's ``budget`` over the profile's."""
    from .check import check as check_file

    return check_file(artifact, target, data_dir=data_dir, pipeline_budget=budget, reference=reference)
