"""The quantization doctor: an int8 file within an accuracy budget, found automatically.

``export --precision int8 --max-accuracy-drop P`` writes the plain int8 file, measures it against the
float model on the held-out data and, while it loses more than ``P`` points, tries remedies in order of
cost, stopping at the first that fits:

0. the format's quantizer options, which cost no size (``FormatSpec.quantizer_options``; ONNX: empirical
   bias correction, NNCF's quantizer, float biases with unwidened weight scales, an exact input scale, a
   float Softmax output, moving-average ranges, ...), the first :data:`MAX_OPTION_ATTEMPTS`, each kept for
   the next only when it raised the output SNR within the size and p50 bounds;
1. calibration: 2x and 4x the images (up to what the source has); ONNX also the entropy and percentile
   methods and per-tensor weights;
2. 16-bit activations (formats whose quantizer mixes activation widths per tensor,
   ``FormatSpec.activation16_ranker``; ONNX): the activation tensors with the lowest signal-to-noise
   ratio against the float graph, the top 1, 2, 4, 8, 16 kept at 16 bits with int8 weights
   (``keep_float`` entries ``a16:<tensor>``; issue 27);
3. per-layer sensitivity: ops ranked by the error they add (TFLite: ``QuantizationDebugger`` layer
   statistics ``rmse / scale``; ONNX: float vs QDQ activations per node), the top 1, 2, 4, 8, ... kept in
   float (TFLite ``denylisted_nodes``, ONNX ``nodes_to_exclude``);
4. nothing fits: the best attempt is written and :class:`AccuracyBudgetError` (exit 1) names it.

Every attempt is judged against the one it started from (:func:`judge`): the change of output SNR and the
paired 95% interval of the accuracy change; ``moved: false`` marks a remedy that moved single images, not the
error. 16-bit activations are not offered where a target cannot run them (:func:`refuses_activation16`).
Every attempt (recipe, accuracy, drop, size, host p50, ops in float, or why it failed) lands in the file's
manifest (``attempts``); the chosen recipe is written beside it as ``<file>.recipe.json``, which
``export --recipe`` replays exactly.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import formats, latency, metrics
from ..errors import EXIT_BUDGET, ConfigError, DataError, EdgeTransferError, UnsupportedError
from ..io import write_json
from ..runtime import load_session, runtime_for
from ..scoring import HeldOut, held_out, predict, probe_batch, reference_probs
from ..training import TrainedModel
from . import integer
from .calibration import Calibration, calibration_set
from .integer import integer_only_targets  # noqa: F401  (the exporter's import point, beside refuses_activation16)
from .recipe import QuantRecipe

log = logging.getLogger("edgetransfer")
RECIPE_KIND = "edgetransfer.recipe"
K_STEPS = (1, 2, 4, 8, 16, 32)  # ops kept in float, doubling: the search costs log2(ops) attempts
SENSITIVITY_IMAGES = 32  # per-layer error is a mean over activations: 32 images rank the layers stably
# ONNX Runtime's HistogramCalibrater (entropy / percentile) keeps every image's activations in memory
# (onnxruntime/quantization/calibrate.py, collect_data): ~30 MB per 224-px Lite0 image, so 64 images ~2 GB.
HISTOGRAM_MAX_IMAGES = 64
# The bound: a mixed-precision file at most 1.5x the plain int8 file's size (float weights cost
# 4 bytes a parameter instead of 1, so the float ops are chosen within that allowance).
MAX_SIZE_RATIO = 1.5
# and at most 1.5x its host p50 (16-bit or float ops fall out of the fused int8 kernels).
MAX_P50_RATIO = 1.5
A16_STEPS = (1, 2, 4, 8, 16)  # activation tensors kept at 16 bits
MAX_OPTION_ATTEMPTS = 6  # quantizer options tried (ONNX has 8, best first; each costs ~the plain attempt's time)
A16 = "a16:"  # a keep_float entry naming an activation tensor kept at 16 bits (formats/onnx.py's A16)
LATENCY_BUDGET_S = 0.5  # per attempt; latency.measure runs at least 20 timed runs anyway
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


@dataclass(frozen=True)
class FileRecipe:
    """Everything that makes one exported file: format, recipe, ops in float, calibration source and seed."""

    format: str
    recipe: QuantRecipe
    keep_float: tuple[str, ...] = ()
    calibration: str = "auto"
    seed: int = 0

    def to_json(self, measured: dict | None = None) -> dict:
        return {
            "kind": RECIPE_KIND,
            "schema": 1,
            "format": self.format,
            "recipe": recipe_dict(self.recipe),
            "keep_float": list(self.keep_float),
            "calibration": self.calibration,
            "seed": self.seed,
            "measured": measured or {},
        }

    @classmethod
    def read(cls, path: str | Path, *, conflicts: bool = False) -> FileRecipe:
        """Read a ``<file>.recipe.json``.

        Raises:
            ConfigError: missing, unreadable or not a recipe file, or given with ``--max-accuracy-drop``.
        """
        path = Path(path)
        if conflicts:
            raise ConfigError(
                "--recipe replays a file; --max-accuracy-drop searches for one",
                path=path,
                fix="give one of them",
            )
        try:
            doc = json.loads(path.read_text())
            if doc.get("kind") != RECIPE_KIND:
                raise ValueError(f"kind is {doc.get('kind')!r}, not {RECIPE_KIND!r}")
            return cls(
                str(doc["format"]),
                QuantRecipe(**doc["recipe"]),
                tuple(str(n) for n in doc.get("keep_float", ())),
                str(doc.get("calibration", "auto")),
                int(doc.get("seed", 0)),
            )
        except EdgeTransferError as exc:
            raise ConfigError(f"bad recipe in the file: {exc.problem}", path=path, fix=exc.fix) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"not a recipe file ({type(exc).__name__}: {exc})",
                path=path,
                fix="pass a <file>.recipe.json written by `edgetransfer export --max-accuracy-drop`",
            ) from None


class WrittenFile(Protocol):
    """What the doctor reads of a written file (``exporter.ExportedArtifact`` is one)."""

    @property
    def path(self) -> Path: ...

    @property
    def size_bytes(self) -> int: ...


# The exporter's ``write_artifact(source, run, fmt, recipe, calibration, out, layout, *, name=None,
# attempts=(), keep_float=())``: passed in by the exporter, so this module does not import it.
Writer = Callable[..., WrittenFile]


@dataclass
class Held:
    """The held-out data and the float model's accuracy on it (computed once, on first use)."""

    data: HeldOut
    reference: float | None = None
    probs: Any = None  # the float model's probabilities on ``data`` (numpy array)


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
    """``recipe`` as the JSON-shaped dict attempts and manifests hold (lists, so one read back is equal)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()}


def check_budget(value) -> float:
    """``value`` as a budget in points (0 to 100), or a ConfigError."""
    try:
        points = float(value)
    except (TypeError, ValueError):
        points = math.nan
    if isinstance(value, bool) or not math.isfinite(points) or not 0 <= points <= 100:
        raise ConfigError(
            f"--max-accuracy-drop {value!r}: not a number of points from 0 to 100",
            fix="e.g. --max-accuracy-drop 0.5 (half a point of top-1 accuracy)",
        )
    return points


def prepare(run: TrainedModel, pairs, max_accuracy_drop, data_dir) -> Held | None:
    """Refuse bad input before any work: the budget, a float-only export, no held-out data.

    Returns:
        The held-out data, or None when no budget was given.
    """
    if max_accuracy_drop is None:
        if data_dir is not None:
            raise ConfigError("--data is the held-out data of --max-accuracy-drop", fix="add --max-accuracy-drop P")
        return None
    check_budget(max_accuracy_drop)
    if not any(r.precision == "int8" for _, r in pairs):
        raise UnsupportedError(
            "--max-accuracy-drop searches int8 recipes; this export is "
            + ", ".join(sorted({r.precision for _, r in pairs})),
            fix="add --precision int8",
        )
    held = held_out(run, data_dir)
    if len(held.y) == 0:
        raise DataError("no held-out images", path=held.source, fix="pass --data DIR with the model's class folders")
    return Held(held)


def _reference(run: TrainedModel, held: Held) -> float:
    if held.reference is None:
        probs, _ = reference_probs(run, held.data.x)
        held.probs = probs
        held.reference = metrics.scores(probs, held.data.y, len(run.classes), str(run.model_path)).accuracy
    return held.reference


def output_snr_db(reference, probs) -> float | None:
    """Signal-to-noise ratio (dB) of a file's output probabilities against the float model's: a continuous
    measure of the error a recipe leaves, where accuracy on a few hundred images moves by whole images."""
    import numpy as np

    ref, got = np.asarray(reference, np.float64), np.asarray(probs, np.float64)
    if ref.shape != got.shape:
        return None
    noise = float(((ref - got) ** 2).sum())
    return round(10 * math.log10(float((ref**2).sum()) / noise), 2) if noise > 0 else 99.0


def _measure(path: Path, held: Held, n_classes: int):
    """Accuracy on the held-out data, host p50 (ms), output SNR and the per-image hits of one file, in its
    default runtime."""
    x = held.data.x
    probs = predict(load_session(path), x, str(path))
    acc = metrics.scores(probs, held.data.y, n_classes, str(path)).accuracy
    lat = latency.measure(
        lambda: runtime_for(path).load(path, None), probe_batch(x.shape[1]), budget_s=LATENCY_BUDGET_S
    )
    snr = output_snr_db(held.probs, probs) if held.probs is not None else None
    return acc, lat.p50, snr, probs.argmax(axis=1) == held.data.y


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

    def __init__(
        self, src, run: TrainedModel, fmt: str, layout: str, held: Held, budget: float, scratch: Path, write: Writer
    ):
        self.src, self.run, self.fmt, self.layout, self.write = src, run, fmt, layout, write
        self.held, self.budget, self.scratch = held, budget, scratch
        self.reference = _reference(run, held)
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
            acc, p50, snr, self.hits[i] = _measure(art.path, self.held, len(self.run.classes))
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
                floats = integer.float_ops(self.fmt, art.path)
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
        from ..errors import ExportError

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


def search(
    src,
    run: TrainedModel,
    fmt,
    recipe,
    calib,
    out,
    layout,
    held: Held,
    budget,
    calibration="auto",
    seed=0,
    *,
    write: Writer,
    activation16: str = "",
    integer_only: str = "",
    sources: Callable | None = None,
) -> DoctorResult:
    """Find an int8 recipe for ``fmt`` within ``budget`` points of the float model, and write it.

    Args:
        src: the format's traced source (``make_source``). run: the TrainedModel.
        recipe, calib: the plain int8 recipe and its calibration set (the first attempt).
        out: the export folder. layout: the file's input layout. held: from :func:`prepare`.
        budget: ``max_accuracy_drop`` in points. calibration, seed: where more calibration images come from.
        write: the exporter's ``write_artifact`` (each attempt, and the chosen file, are written by it).
        activation16: why 16-bit activations are not offered (a target whose runtime has no 16-bit
            activation kernels, :func:`refuses_activation16`), or ``""`` when they are.
        integer_only: why every op must be integer (``integer.integer_only_targets``), or ``""``: then only
            integer remedies are tried (``integer.py``) and no attempt with a float op is chosen.
        sources: ``recipe -> (source, notes)`` for recipes whose QAT or weight remedies change the weights
            (the exporter's model variants); without it those remedies are not tried.

    Returns:
        The result; the file is written (at its best attempt) even when nothing met the budget.
    """
    start = time.perf_counter()
    budget = check_budget(budget)
    with tempfile.TemporaryDirectory(prefix=".doctor-", dir=out) as tmp:
        s = _Search(src, run, fmt, layout, held, budget, Path(tmp), write)
        s.no_activation16, s.integer_only, s.sources = activation16, integer_only, sources
        s.attempt("plain int8", recipe, calib)
        for remedy in _remedies(s):
            if any(a["met_budget"] for a in s.attempts):
                break
            remedy(s, recipe, calib, calibration, seed)
        best = s.best()
        cal = s.cals[best["attempt"]]
        chosen = QuantRecipe(**best["recipe"])
        chosen_src, notes = s.source(chosen)
        art = write(chosen_src, run, fmt, chosen, cal, out, layout, attempts=tuple(s.attempts),
                             keep_float=tuple(best["keep_float"]), notes=notes)  # fmt: skip
    file_recipe = FileRecipe(fmt, chosen, tuple(best["keep_float"]), str(calibration), seed)
    measured = {k: best[k] for k in ("attempt", "remedy", "accuracy", "accuracy_drop", "size_bytes", "p50_ms")}
    measured.update(reference_accuracy=s.reference, max_accuracy_drop=budget, held_out=held.data.to_json())
    recipe_path = write_json(art.path.with_name(art.path.name + ".recipe.json"), file_recipe.to_json(measured))
    return DoctorResult(
        art, tuple(s.attempts), best["attempt"], best["met_budget"], budget, s.reference, Path(recipe_path),
        round(time.perf_counter() - start, 1),
    )  # fmt: skip


def _remedies(s: _Search) -> tuple:
    """The remedies in order of cost: integer ones only for an integer-only target (``integer.py``)."""
    weights = (integer.weight_remedies,) if s.sources is not None else ()
    if s.integer_only:
        return (_option_remedies, _calibration_remedies, *weights, *((integer.qat_remedy,) if weights else ()))
    return (_option_remedies, _calibration_remedies, *weights, _activation16_remedies, _sensitivity_remedies)


def _within_cost(s: _Search, a: dict) -> bool:
    """``a`` is within the size and p50 bounds against the plain int8 file (attempt 1)."""
    plain = s.attempts[0]
    if plain.get("status") != "ok" or a.get("status") != "ok":
        return False
    return a["size_bytes"] <= MAX_SIZE_RATIO * plain["size_bytes"] and a["p50_ms"] <= MAX_P50_RATIO * plain["p50_ms"]


def _best_ok(s: _Search, all_int8: bool = False) -> dict | None:
    """The attempt with the smallest drop (within the size and p50 bounds where any is) to build on."""
    ok = [
        a for a in s.attempts if a["status"] == "ok" and a.get("integer", True) and not (all_int8 and a["keep_float"])
    ]
    ok = [a for a in ok if _within_cost(s, a)] or ok
    return min(ok, key=lambda a: a["accuracy_drop"]) if ok else None


def _met(s: _Search) -> bool:
    return any(a["met_budget"] for a in s.attempts)


def _calibration_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """2x then 4x the calibration images; then, where the format has them (``FormatSpec.calibration_methods``,
    ``weight_granularities``; ONNX), the other calibration methods and the other weight granularity."""
    from dataclasses import replace

    spec = formats.get(s.fmt)
    have = len(calib.images)
    start = _best_ok(s, all_int8=True) or s.attempts[0]  # the options chosen so far are kept
    for factor in (2, 4):
        if _met(s):
            return
        cal = calibration_set(s.run.manifest, calibration, factor * recipe.calibration_size, seed=seed)
        if len(cal.images) <= have:
            break  # the source has no more images
        have = len(cal.images)
        r = replace(QuantRecipe(**start["recipe"]), calibration_size=have)
        s.attempt(f"calibration {have} images", r, cal, vs=start["attempt"])
    base = _best_ok(s) or s.attempts[0]
    base_cal = s.cals.get(base["attempt"], calib)
    for method in spec.calibration_methods[1:]:  # the first is the default, tried already
        if _met(s):
            return
        n = min(len(base_cal.images), HISTOGRAM_MAX_IMAGES)
        cal = Calibration(base_cal.images[:n], base_cal.source, base_cal.files[:n])  # a prefix: replays exactly
        r = replace(QuantRecipe(**base["recipe"]), method=method, calibration_size=n)
        s.attempt(f"calibration method {method} ({n} images)", r, cal, vs=base["attempt"])
    if not _met(s) and len(spec.weight_granularities) > 1:
        base = _best_ok(s) or s.attempts[0]
        r = QuantRecipe(**base["recipe"])
        r = replace(r, per_channel=not r.per_channel)
        s.attempt(f"{'per-channel' if r.per_channel else 'per-tensor'} weights", r, s.cals.get(base["attempt"], calib),
                  vs=base["attempt"])  # fmt: skip


def _option_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """The format's int8 writer options (``FormatSpec.quantizer_options``: scale, range, bias and weight
    rounding fixes), each tried on the best all-int8 recipe so far and kept for the next when it raised the
    output SNR by :data:`SNR_MOVED_DB`; one that moved nothing is recorded as such and dropped."""
    from dataclasses import replace

    options = formats.get(s.fmt).quantizer_options
    base = s.attempts[0]
    if not options or base["status"] != "ok":
        return
    plain = QuantRecipe(**base["recipe"])
    for option in options[:MAX_OPTION_ATTEMPTS]:
        if _met(s):
            return
        r = QuantRecipe(**base["recipe"])
        a = s.attempt(f"option {option}", replace(r, options=(*r.options, option)), calib, vs=base["attempt"])
        if a["status"] != "ok" and r.options:  # an option that does not combine with those kept: alone
            a = s.attempt(f"option {option} alone", replace(plain, options=(option,)), calib)
        gain = a.get("snr_change_db")
        if (
            a.get("moved")
            and gain is not None
            and gain >= SNR_MOVED_DB
            and _within_cost(s, a)
            and a.get("integer", True)
        ):
            base = a  # the next option builds on this one


def refuses_activation16(targets: Sequence[Any]) -> str:
    """Why no recipe with 16-bit activation tensors may be offered for ``targets`` (target profiles), or
    ``""``: a target whose precisions lack ``int16x8`` has a runtime without 16-bit activation kernels
    (an Edge TPU, a TFLM part without them), so such a file would not run there."""
    refused = [t.name for t in targets if "int16x8" not in t.precisions]
    return (
        f"16-bit activations not offered: {', '.join(refused)} cannot run them (no int16x8 precision)"
        if refused
        else ""
    )


def _failed_analysis(s: _Search, what: str, r: QuantRecipe, cal: Calibration, start: float, exc: Exception) -> None:
    """An analysis step that crashed: recorded as a failed attempt (the search goes on with the next remedy)."""
    s.attempts.append(
        {
            "attempt": len(s.attempts) + 1,
            "remedy": what,
            "recipe": recipe_dict(r),
            "calibration_count": len(cal.images),
            "keep_float": [],
            "status": "failed",
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
            "met_budget": False,
            "seconds": round(time.perf_counter() - start, 2),
        }
    )


def _activation16_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """Keep the 1, 2, 4, 8, 16 lowest-SNR activation tensors of the best attempt so far at 16 bits."""
    base = _best_ok(s)
    ranker = formats.get(s.fmt).activation16_ranker_fn()
    if base is None or ranker is None:
        return
    if s.no_activation16:
        log.info("doctor %s: %s", s.fmt, s.no_activation16)
        s.attempts.append({"attempt": len(s.attempts) + 1, "remedy": "16-bit activations", "recipe": base["recipe"],
                           "calibration_count": base["calibration_count"], "keep_float": [], "status": "skipped",
                           "error": s.no_activation16, "met_budget": False, "seconds": 0.0})  # fmt: skip
        return
    r, cal = QuantRecipe(**base["recipe"]), s.cals[base["attempt"]]
    start = time.perf_counter()
    try:
        ranked = ranker(s.source(r)[0], s.paths[base["attempt"]], cal, layout=s.layout, images=SENSITIVITY_IMAGES)
    except Exception as exc:
        _failed_analysis(s, "per-tensor SNR analysis", r, cal, start, exc)
        return
    log.info("doctor %s: lowest-SNR activations: %s", s.fmt, ", ".join(ranked[:8]))
    plain_p50 = s.attempts[0].get("p50_ms")
    for k in A16_STEPS:
        if _met(s) or k > len(ranked):
            return
        a = s.attempt(f"16-bit activations top-{k} low-SNR tensors", r, cal, ranked[:k], vs=base["attempt"])
        if a["status"] != "ok":
            return  # the recipe cannot take 16-bit tensors (e.g. an NNCF-quantized file): wider fails too
        if plain_p50 and a["status"] == "ok" and a["p50_ms"] > MAX_P50_RATIO * plain_p50:
            # more 16-bit tensors only add ops outside the fused int8 kernels: stop here
            log.info("doctor %s: 16-bit activations over %.1fx the plain p50, not widened further", s.fmt,
                     MAX_P50_RATIO)  # fmt: skip
            return


def _sensitivity_remedies(s: _Search, recipe: QuantRecipe, calib: Calibration, calibration, seed: int) -> None:
    """Rank the ops of the best all-int8 attempt so far by the error they add; keep the top 1, 2, 4, ... in float."""
    base = _best_ok(s, all_int8=True)
    if base is None:
        return
    r, cal = QuantRecipe(**base["recipe"]), s.cals[base["attempt"]]
    start = time.perf_counter()
    try:
        ranker = formats.get(s.fmt).sensitivity_ranker_fn()
        if ranker is None:
            return  # a format without a ranker: nothing more to try
        path = s.paths[base["attempt"]]
        allowance = (MAX_SIZE_RATIO - 1) * path.stat().st_size
        ranked = ranker(
            s.source(r)[0], path, cal, layout=s.layout, images=SENSITIVITY_IMAGES, size_allowance=allowance
        )
    except Exception as exc:  # the analysis is a remedy too: a failure is recorded and the search ends here
        _failed_analysis(s, "per-layer sensitivity analysis", r, cal, start, exc)
        return
    log.info("doctor %s: most sensitive ops: %s", s.fmt, ", ".join(ranked[:8]))
    for k in K_STEPS:
        k = min(k, len(ranked))
        done = any(a["keep_float"] == ranked[:k] and a["recipe"] == recipe_dict(r) for a in s.attempts)
        if _met(s) or k == 0 or done:
            if _met(s) or k == len(ranked):
                return
            continue
        s.attempt(f"float top-{k} sensitive ops", r, cal, ranked[:k], vs=base["attempt"])


def raise_unmet(results: Sequence[DoctorResult], artifacts) -> None:
    """Raise :class:`AccuracyBudgetError` (exit 1) naming the files whose best attempt missed the budget."""
    unmet = [r for r in results if not r.met]
    if not unmet:
        return
    parts = []
    for r in unmet:
        best = r.attempts[r.chosen - 1]
        parts.append(
            f"{r.artifact.path.name}: best attempt #{best['attempt']} ({best['remedy']}) loses "
            f"{best['accuracy_drop']:.2f} points (budget {r.budget:g})"
        )
    from .diagnose import unmet_note  # issue 27: the tensors adding most error in each file written

    note = unmet_note(unmet)
    raise AccuracyBudgetError(
        "no int8 recipe met --max-accuracy-drop; the best attempt was written: "
        + "; ".join(parts)
        + (f"\n  diagnosis: {note}" if note else ""),
        path=unmet[0].artifact.path,
        fix="raise --max-accuracy-drop, calibrate on more representative images (--calibration DIR), "
        "or ship fp16 / int16x8 for this model",
        results=results,
        artifacts=artifacts,
    )


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
    return rows, [*header, "SNR dB", "moved (vs #)", ""]


def _moved(a: dict) -> str:
    """``yes``/``nothing`` and the attempt it was judged against (:func:`judge`); ``-`` when not judged."""
    if "moved" not in a:
        return "-"
    return f"{'yes' if a['moved'] else 'nothing'} (#{a['vs_attempt']})"
