"""The sweep's grid: backbone x input size x precision x target, checked before any work.

:func:`plan_grid` resolves every name once and refuses what cannot run (exit 2) before a
single run trains; the checked grid is the :class:`~edgetransfer.records.Grid` record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import backbones
from .. import targets as targets_lib
from ..errors import ConfigError
from ..exporter.quantization import QuantRecipe
from ..records import Budget, Grid
from . import picks

# the input sides tried per backbone by default (plus its native size; see default_sizes)
LADDER = (128, 160, 192, 224)
FORMAT = picks.FORMAT


@dataclass(frozen=True)
class SweepPlan:
    """A checked grid (the record) and the target profiles it names, resolved once."""

    grid: Grid
    profiles: tuple[targets_lib.TargetProfile, ...]

    def configs(self) -> list[tuple[str, int, str]]:
        return self.grid.configs()


def profile_budget(t: targets_lib.TargetProfile) -> Budget:
    """The budgets of a profile the sweep judges (p90 latency, size, accuracy drop)."""
    b = t.budgets
    return Budget(latency_p90_ms=b.latency_p90_ms, size_mb=b.size_mb, accuracy_drop=b.accuracy_drop)


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
) -> SweepPlan:
    """Check every name and size before any work; the empty grid is an error too.

    Raises:
        ConfigError: an unknown backbone, target or precision, a size a backbone refuses, a
            precision no target runs, a profile name that is not a safe folder name, or an
            empty grid (exit 2).
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
        picks.folder_name(t)  # the pick's pipeline.yaml goes under <out>/picks/<name>: refuse before work
        if FORMAT not in t.formats:
            raise ConfigError(
                f"target {t.name} does not run {FORMAT} files; the sweep exports {FORMAT}", fix="drop it"
            )
    for p in precs:
        if all(t.can_run(FORMAT, p) for t in tgts):
            raise ConfigError(
                f"no target runs {p} {FORMAT} models", fix=f"drop --precision {p} or add a target that runs it"
            )
    grid = Grid(sizes, precs, tuple(t.name for t in tgts))
    if not grid.configs():
        raise ConfigError("the grid is empty", fix="give at least one --backbone, --image-size and --precision")
    return SweepPlan(grid, tgts)
