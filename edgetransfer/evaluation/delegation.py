"""Delegation as observed where a file runs (issue #39, item 2): which runtime to ask, and what to say.

The observers live with the runtimes (:mod:`edgetransfer.runtime.delegation`, registered per runtime as
``RuntimeSpec.observer``); here the evaluation picks the runtime that ran the file on a host target and
turns the record into findings. The static analyzers (:mod:`.compat`) stay the prediction where nothing ran.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from .. import isa
from ..errors import EdgeTransferError
from ..exporter.formats import INTEGER_PRECISIONS
from ..records.delegation import Delegation
from ..records.export import ExportedArtifact
from ..records.latency import Latency
from ..records.measure import Measurement
from ..records.vocab import MeasureMode
from ..runtime import delegation as delegation_lib
from ..runtime import runtime_for
from .timing import runtime_of

log = logging.getLogger("edgetransfer")


def observe(art: ExportedArtifact, target, lat: Latency | None) -> Delegation | None:
    """How the runtime that ran ``art`` here (the one whose latency is reported, else the file's default)
    delegated it; None on a target not run on this host, or where the runtime cannot say (logged)."""
    if target.measure != MeasureMode.HOST or not runtime_of(target).measures_latency_here:
        return None
    name = (lat.detail.get("runtime") if lat is not None else None) or runtime_for(art.path).name
    try:
        found = delegation_lib.observe(art.path, name, target.provider, target.threads)
    except (EdgeTransferError, RuntimeError, ValueError, KeyError, OSError) as exc:  # native runtimes raise these
        log.warning("note: delegation of %s in %s not observed (%s)", art.path.name, name, str(exc)[:200])
        return None
    if found is not None and art.precision not in INTEGER_PRECISIONS:  # float ops are the point of a float file
        found = dataclasses.replace(found, float_ops=None, float_op_types=())
    return found


def findings(m: Measurement) -> list[str]:
    """What the runtime that ran the file left to the CPU's fallback kernels, and the float ops of an integer file."""
    d, name = m.delegation, Path(m.artifact).name
    if d is None:
        return []
    out = [] if d.full else [f"{name} on {m.target}: {d.describe()}"]
    if d.float_ops:
        out.append(
            f"{name} on {m.target}: a {m.precision} file, yet {d.float_ops} op(s) computed in float in {d.runtime} "
            f"({', '.join(d.float_op_types)}); an integer-only accelerator would not run them"
        )
    return out


def isa_findings(art: ExportedArtifact, target) -> list[str]:
    """An int8 file made for CPUs with VNNI, on a target whose CPU has none (its U8S8 pairs saturate there), and a
    figure measured on this host for a target whose CPU computes the file differently (:mod:`edgetransfer.isa`)."""
    recipe = art.manifest.recipe or {}
    host = target.measure == MeasureMode.HOST and runtime_of(target).measures_latency_here
    where = tuple(target.isa) or (isa.detect() if host else ())
    if not recipe.get("quantized_for") or not isa.saturates_on(recipe, where):
        return []
    out = [
        f"{art.path.name} on {target.name}: quantized for CPUs with VNNI (8-bit int8 weights); {target.name}'s CPU "
        f"({isa.describe(where)}) has none, so ONNX Runtime's U8S8 kernels add weight pairs in int16 there and "
        f"saturate (vpmaddubsw). Fix: export with --target {target.name} (uint8 weights)"
    ]
    if host and not isa.u8s8_saturates(isa.detect()):
        out.append(
            f"{art.path.name} on {target.name}: measured on this host ({isa.describe(isa.detect())}, no saturation); "
            f"the figure does not hold on the target's {isa.describe(where)}"
        )
    return out


def from_device(results) -> Delegation | None:
    """The delegation device results report (:mod:`.device_results`): ``benchmark_litert_model``'s
    ``fully_accelerated`` and accelerators, or ``benchmark_model``'s "Replacing N out of M node(s)" line; None
    when they say nothing about it (the static prediction is then what the gate judges)."""
    from ..records.delegation import DEVICE_LOG, from_log

    for r in results:
        if r.fully_accelerated is not None:
            return Delegation(
                runtime="litert",
                accelerator="+".join(r.accelerators) or "accelerator",
                nodes_total=0,
                nodes_accelerated=0,
                partitions=0,
                fully_accelerated=r.fully_accelerated,
                source=f"{DEVICE_LOG}: {r.device}",
                note="the tool reports whether the graph is fully accelerated, not which ops fell back",
            )
        try:
            text = Path(r.source).read_text(errors="replace")
        except OSError:
            continue
        found = from_log(text)
        if found is not None:
            return dataclasses.replace(found, source=f"{DEVICE_LOG}: {r.device}")
    return None
