"""The attempts of one int8 file's search, each written to a scratch folder and measured.

Each is judged against the one it started from (:func:`judge`); the attempt table and the error raised
when none met the budget live here too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ...errors import EXIT_BUDGET, EdgeTransferError
from ...evaluation.accuracy import Evaluator
from .. import formats
from .calibration import Calibration
from .integer import float_ops
from .recipe import QuantRecipe

log = logging.getLogger("edgetransfer")


# The bound: a mixed-precision file at most 1.5x the plain int8 file's size (float weights cost
# 4 bytes a parameter instead of 1, so the float ops are chosen within that allowance).
MAX_SIZE_RATIO = 1.5


# and at most 1.5x its host p50 (16-bit or float ops fall out of the fused int8 kernels).
MAX_P50_RATIO = 1.5


A16 = "a16:"  # a keep_float entry naming an activation tensor kept at 16 bits (formats/onnx.py's A16)


# A remedy "moved" the error when the output SNR changed by this much: the same recipe calibrated on 200,
# 400 and 800 images gave 14.4 / 14.4 / 14.3 dB on digits Lite0 128 px (benchmarks/quant_doctor.py), so
# 0.5 dB is five times the spread that single images make.
SNR_MOVED_DB = 0.5


class AccuracyBudgetError(EdgeTransferError):
    """No int8 recipe met ``--max-accuracy-drop``; the best attempt is written (exit 1)."""

    exit_code = EXIT_BUDGET

    def __init__(self, problem: str, *, path=None, fix=None, results=(), artifacts=()):
        super().__init__(problem, path=path, fix=fix)
        self.results = tuple(results)
        self.artifacts = tuple(artifacts)


class WrittenFile(Protocol):
    """What the doctor reads of a written file (``exporter.ExportedArtifact`` is one)."""

    @property
    def path(self) -> Path: ...

    @property
    def size_bytes(self) -> int: ...


# The exporter's ``write_artifact(source, run, fmt, recipe, calibration, out, layout, *, name=None,
# attempts=(), keep_float=())``: passed in by the exporter, so this module does not import it.
Writer = Callable[..., WrittenFile]


@dataclass(frozen=True)
class DoctorResult:
    """One int8 file's search: the file written, every attempt, which was chosen, whether it met the budget."""

    artifact: WrittenFile  # the exporter's ExportedArtifact
    attempts: tuple[dict, ...]
    chosen: int  # 1-based attempt number
    met: bool
    budget: float
    reference_accuracy: float
    recipe_path: Path
    seconds: float = field(default=0.0)


def recipe_dict(recipe: QuantRecipe) -> dict:
    """``recipe`` as the JSON-shaped dict attempts and manifests hold."""
    return recipe.to_dict()


def output_snr_db(reference, probs) -> float | None:
    """Signal-to-noise ratio (dB) of a file's output probabilities against the float model's: a continuous
    measure of the error a recipe leaves, where accuracy on a few hundred images moves by whole images."""
    import numpy as np

    ref, got = np.asarray(reference, np.float64), np.asarray(probs, np.float64)
    if ref.shape != got.shape:
        return None
    noise = float(((ref - got) ** 2).sum())
    return round(10 * math.log10(float((ref**2).sum()) / noise), 2) if noise > 0 else 99.0


def paired_interval(a, b) -> tuple[float, float, float]:
    """(mean, low, high) in points: the 95% interval of the accuracy difference ``b - a`` of two files on
    the same images (a paired interval over the per-image hits, normal quantile 1.96: hundreds of images)."""
    import numpy as np

    d = 100.0 * (np.asarray(b, np.float64) - np.asarray(a, np.float64))
    mean = float(d.mean()) if len(d) else 0.0
    half = 1.96 * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.inf
    return round(mean, 3), round(mean - half, 3), round(mean + half, 3)


def judge(rec: dict, base: dict, hits, base_hits) -> None:
    """Record in ``rec`` what the remedy moved against the attempt it started from (``base``): the change of
    output SNR and the paired accuracy interval; ``moved`` is False when neither moved (the SNR by under
    :data:`SNR_MOVED_DB`, the interval across 0): a remedy that moved single images, not the error."""
    if rec.get("status") != "ok" or base.get("status") != "ok" or hits is None or base_hits is None:
        return
    d_snr = None
    if rec.get("output_snr_db") is not None and base.get("output_snr_db") is not None:
        d_snr = round(rec["output_snr_db"] - base["output_snr_db"], 2)
    mean, lo, hi = paired_interval(base_hits, hits)
    rec["vs_attempt"] = base["attempt"]
    rec["snr_change_db"] = d_snr
    rec["accuracy_change_pts"] = [mean, lo, hi]
    rec["moved"] = bool((d_snr is not None and abs(d_snr) >= SNR_MOVED_DB) or lo > 0 or hi < 0)


class _Search:
    """The attempts of one int8 file, each written to a scratch folder and measured."""

    def __init__(self, src, ev: Evaluator, fmt: str, layout: str, budget: float, scratch: Path, write: Writer):
        self.src, self.run, self.fmt, self.layout, self.write = src, ev.run, fmt, layout, write
        self.ev, self.budget, self.scratch = ev, budget, scratch
        self.reference = ev.require_reference()
        self.attempts: list[dict] = []
        self.paths: dict[int, Path] = {}
        self.cals: dict[int, Calibration] = {}
        self.hits: dict[int, Any] = {}  # attempt -> per-image hits on the held-out data
        self.no_activation16 = ""  # why 16-bit activations are not offered ("" when they are)
        self.integer_only = ""  # why every op must be integer ("" when float ops may be offered)
        self.sources: Callable | None = None  # recipe -> (source, notes) for recipes that change the weights

    def source(self, recipe: QuantRecipe) -> tuple[Any, dict]:
        """The traced source a recipe writes from (its QAT / weight remedies applied) and what they did."""
        if recipe.changes_weights and self.sources is not None:
            return self.sources(recipe)
        return self.src, {}

    def attempt(
        self, remedy: str, recipe: QuantRecipe, cal: Calibration, keep: Sequence[str] = (), vs: int = 1
    ) -> dict:
        """Write and measure one recipe, judged against attempt ``vs`` (:func:`judge`); a converter or runtime
        failure is recorded, never raised."""
        i = len(self.attempts) + 1
        rec: dict = {
            "attempt": i,
            "remedy": remedy,
            "recipe": recipe_dict(recipe),
            "calibration_count": len(cal.images),
            "keep_float": list(keep),
        }
        start = time.perf_counter()
        try:
            name = f"attempt{i}{formats.get(self.fmt).suffix}"
            src, notes = self.source(recipe)
            art = self.write(src, self.run, self.fmt, recipe, cal, self.scratch, self.layout, name=name,
                                 keep_float=keep, notes=notes)  # fmt: skip
            got = self.ev.check_file(art.path)
            acc, p50, self.hits[i] = got.accuracy, self.ev.p50_ms(art.path), got.hits
            snr = output_snr_db(self.ev.reference_probs(), got.probs)
            drop = round(100 * (self.reference - acc), 3)
            rec.update(status="ok", accuracy=acc, accuracy_drop=drop, size_bytes=art.size_bytes, p50_ms=p50)
            rec["output_snr_db"] = snr
            first = self.attempts[0] if self.attempts else {}
            plain, plain_p50 = first.get("size_bytes"), first.get("p50_ms")
            rec["met_budget"] = (
                drop <= self.budget
                and (not plain or art.size_bytes <= MAX_SIZE_RATIO * plain)
                and (not plain_p50 or p50 <= MAX_P50_RATIO * plain_p50)
            )
            self.paths[i], self.cals[i] = art.path, cal
            if self.integer_only:  # issue 36: a file with a float op is never chosen for an integer-only target
                floats = float_ops(self.fmt, art.path)
                rec["integer"], rec["float_ops"] = not floats, floats[:8]
                rec["met_budget"] = rec["met_budget"] and not floats
            if notes.get("seconds") is not None:
                rec["weights_seconds"] = notes["seconds"]
        except Exception as exc:  # a remedy that crashes the converter or runtime: recorded, the search goes on
            rec.update(
                status="failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            )
            rec["met_budget"] = False
        rec["seconds"] = round(time.perf_counter() - start, 2)
        if self.attempts:
            judge(rec, self.attempts[vs - 1], self.hits.get(i), self.hits.get(vs))
        self.attempts.append(rec)
        log.info("doctor %s #%d %s: %s", self.fmt, i, remedy, _summary(rec))
        return rec

    def best(self) -> dict:
        """The first attempt that met the budget, else the one with the smallest drop (then the fastest)."""
        ok = [a for a in self.attempts if a["status"] == "ok"]
        if self.integer_only:
            ok = [a for a in ok if a.get("integer")]
        met = [a for a in ok if a["met_budget"]]
        if met:
            return met[0]
        if not ok:
            raise self._all_failed()
        return min(ok, key=lambda a: (a["accuracy_drop"], a["p50_ms"]))

    def _all_failed(self):
        from ...errors import ExportError

        if self.integer_only and any(a["status"] == "ok" for a in self.attempts):
            floats = next(a.get("float_ops") for a in self.attempts if a["status"] == "ok")
            return ExportError(
                f"no {self.fmt} int8 attempt is integer end to end ({self.integer_only}; float ops: "
                f"{', '.join(floats or [])})",
                path=self.run.model_path,
                fix="export another format for this target (its profile lists the formats it runs)",
            )
        return ExportError(
            f"every int8 attempt for {self.fmt} failed (first: {self.attempts[0].get('error')})",
            path=self.run.model_path,
            fix="run with --debug; try another precision",
        )


def _summary(a: dict) -> str:
    if a["status"] != "ok":
        return f"failed ({a['error']})"
    return f"accuracy {a['accuracy']:.4f}, drop {a['accuracy_drop']:+.2f} pts, p50 {a['p50_ms']:.2f} ms"


def _widths(keep: Sequence[str]) -> str:
    """``float ops/16-bit tensors`` of a ``keep_float`` list (``a16:`` entries are 16-bit activations)."""
    wide = sum(1 for k in keep if k.startswith(A16))
    return f"{len(keep) - wide}/{wide}"


def attempts_table(attempts: Sequence[dict]) -> tuple[list[list], list[str]]:
    """Rows and header of the attempt table the CLI and the benchmark print."""
    rows = []
    for a in attempts:
        r = a["recipe"]
        recipe = f"{r['method']}/{'pc' if r['per_channel'] else 'pt'}/{a['calibration_count']}"
        recipe += "".join(f"+{o}" for o in r.get("options", ()))
        recipe += "".join(f"+{w}" for w in r.get("weights", ())) + (
            f"+qat{r['qat_epochs']}" if r.get("qat_epochs") else ""
        )
        ok = a["status"] == "ok"
        rows.append(
            [
                a["attempt"],
                a["remedy"],
                recipe,
                _widths(a["keep_float"]),
                f"{a['accuracy']:.4f}" if ok else "-",
                f"{a['accuracy_drop']:+.2f}" if ok else "-",
                f"{a['size_bytes'] / 1e6:.2f} MB" if ok else "-",
                f"{a['p50_ms']:.2f}" if ok else "-",
                f"{a['output_snr_db']:.1f}" if ok and a.get("output_snr_db") is not None else "-",
                _moved(a),
                ("met" if a["met_budget"] else "over") if ok else a["status"],
            ]
        )
    header = ["#", "remedy", "method/weights/images", "float/16-bit", "accuracy", "drop pts", "size", "p50 ms"]
    header += ["SNR dB", "moved (vs #)", ""]
    if any("integer" in a for a in attempts):  # an integer-only target's search: the float ops each file has
        header.insert(4, "float ops")
        for row, a in zip(rows, attempts, strict=True):
            row.insert(4, len(a["float_ops"]) if "float_ops" in a else "-")
    return rows, header


def _moved(a: dict) -> str:
    """``yes``/``nothing`` and the attempt it was judged against (:func:`judge`); ``-`` when not judged."""
    if "moved" not in a:
        return "-"
    return f"{'yes' if a['moved'] else 'nothing'} (#{a['vs_attempt']})"
