"""Quantization doctor (issues #15, #27): int8 within --max-accuracy-drop, TFLite and ONNX, on real runs;
NNCF's accuracy-controlled quantization beside the ONNX search.

Cases: the quickstart's digits run (scikit-learn digits as an image folder, Lite0 features at 96 and 128 px),
digits64 (Lite0 features at 64 px) and hymenoptera (Lite0 features at 224 px), each exported to int8 TFLite
and ONNX with ``max_accuracy_drop=0.5``. Prints every attempt (with what it moved: output SNR change and the
paired accuracy interval against the attempt it started from), the doctor's wall time per case, the chosen
file against the plain int8 file of the same search (attempt 1): drop within 0.5 points, host p50 and size at
most 1.5x the plain file's; and NNCF ``quantize_with_accuracy_control`` (ONNX backend, ``max_drop`` = the
budget, the same float graph, 200 calibration images and held-out data) with its drop, size, p50 (both files
through the same bare ONNX Runtime session) and time.

    python benchmarks/quant_doctor.py [--out /tmp/quant-doctor] [--budget 0.5] [--skip-hymenoptera]
        [--sizes 96 128] [--formats tflite onnx] [--cases digits digits64 hymenoptera] [--no-nncf] [--integer]

``--integer`` adds, per case, the integer-only columns of benchmarks/quant_integer.py (issue 36): bias
correction, learned rounding and QAT files beside plain int8 (drop, p50, float ops, seconds each recipe cost),
and the plain float fine-tune QAT is compared with.

Measured (issue 27, `--cases digits digits64 --sizes 96` at load 7 to 9, then `--cases hymenoptera` at load 2
to 7, on the 2-core machine with other helpers' jobs, so p50 is noisy; digits: 359 held-out images, 1 image =
0.28 points; hymenoptera: 153 images, 1 image = 0.65 points, over the 0.5 budget):

    case             plain  chosen recipe                                 drop   SNR dB        size   p50    s
    digits96 tflite  +0.00  #1 plain int8                                 +0.00  16.7          1.00x  1.00x   67
    digits96 onnx    +0.83  #2 option bias_correction                     -0.56  17.7 -> 22.1  1.00x  1.03x   75
    digits64 tflite  +1.11  #4 float top-1 op (the stem), 400 images      -0.28  15.7 -> 16.9  1.00x  0.85x  201
    digits64 onnx    +1.39  #11 percentile (64 images) + bias_correction  +0.27  16.0 -> 20.6  1.00x  1.10x   87
    hymenoptera tfl  +0.65  #2 calibration 245 images (moved nothing)     +0.00  32.3 -> 32.8  1.00x  0.98x   98
    hymenoptera onnx +0.00  #1 plain int8                                 +0.00  33.6          1.00x  1.00x   26

    NNCF accuracy control (ONNX)  drop   size     p50 ms  time s   ours, same session
    digits96                      +0.28  3.78 MB  48.21   68       -0.56, 3.89 MB, 1.37 ms  (fp32 1.75 ms)
    digits64                      -0.28  3.78 MB  26.36   34       +0.28, 3.89 MB, 0.65 ms  (fp32 1.42 ms)
    hymenoptera                   +0.00  3.77 MB  36.12   23       +0.00, 3.88 MB, 4.03 ms  (fp32 8.34 ms)

The ONNX remedy that moved the error is empirical bias correction of ONNX Runtime's file (option
``bias_correction``): output SNR +4.4 dB (digits96) and +5.8 dB (digits64) at the same size and p50. On
digits64 the other options moved nothing (exact_input_scale, float_output, asymmetric_weights: SNR 21.8 ->
21.8), moving-average ranges made it worse (18.7 dB), and the attempt that met the budget (#11) has a lower SNR
(20.6 dB) than #2 (21.8 dB, +0.55 points): at 359 images the last half point is single images. NNCF holds its
bound too but its graph keeps Clip between Q/DQ pairs, which ONNX Runtime's CPU kernels do not fuse: 26 to 48 ms
against 0.65 to 1.37 ms for ours, slower than fp32, so it is not used by default (``nncf_bias_correction`` is
an option, extra ``quant``; its p50 is over the 1.5x bound). No case tried loses more than 3 points with plain
int8 (issue 27 asks for one): digits64 1.11 / 1.39 (TFLite / ONNX), digits48 0.00 / 0.55, Lite2 at 64 px
0.28 / 1.11, Lite0 fine-tuned end to end at 96 px 0.28 (TFLite, SNR 31.8 dB), hymenoptera at 96 px -1.31 /
-1.96; a MobileNetV3-Small from random weights did not train (10% accuracy). Hymenoptera's TFLite plain int8
lost one image (0.65 points > 0.5); the 245-image calibration "fixed" it at the same output SNR (judged moved
nothing), 1.00x size and p50; an earlier run (other weights) met at attempt 1 in both formats (-0.65 points).
Earlier (load 9 to 12): at 128 px ONNX plain int8 0.00 (met), TFLite 0.56, 800 images -0.28 (met, 154 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quant_cases import FRAGILE, HYMENOPTERA, _load, _run  # noqa: E402

from edgetransfer.cli._common import table  # noqa: E402
from edgetransfer.data import samples  # noqa: E402
from edgetransfer.evaluation.heldout import held_out  # noqa: E402
from edgetransfer.exporter.artifacts import export  # noqa: E402
from edgetransfer.exporter.quantization import QuantRecipe, calibration_set  # noqa: E402
from edgetransfer.exporter.quantization.attempts import AccuracyBudgetError, _widths, attempts_table  # noqa: E402
from edgetransfer.flows.quickstart import TRAIN  # noqa: E402
from edgetransfer.runtime import latency  # noqa: E402
from edgetransfer.training import TrainedModel  # noqa: E402

RATIO = 1.5  # the bound on p50 and size against the plain int8 file


def _chosen_recipe(a: dict) -> str:
    """What the chosen attempt did: its remedy, options, float ops and 16-bit tensors."""
    opts = "+".join(a["recipe"].get("options", ()))
    return f"#{a['attempt']} {a['remedy']}" + (f" [{opts}]" if opts else "") + f" ({_widths(a['keep_float'])})"


def case(name: str, run: TrainedModel, out: Path, budget: float, fmts=("tflite", "onnx")) -> tuple[list, dict]:
    """The doctor on ``run`` per format: the summary rows and the written file per format."""
    rows, files = [], {}
    for fmt in fmts:
        start = time.perf_counter()
        try:
            (art,) = export(run, [fmt], [QuantRecipe.int8()], out=out / name, max_accuracy_drop=budget)
            met = True
        except AccuracyBudgetError as exc:
            (art,), met = exc.artifacts, False
        wall = time.perf_counter() - start
        files[fmt] = art.path
        att = art.manifest.attempts
        print(f"\n== {name} {fmt}: {art.path.name}, doctor wall time {wall:.0f} s (load {_load()})")
        print(table(*attempts_table(att)))
        plain = att[0]
        chosen = next((a for a in att if a["met_budget"]), None) or min(
            (a for a in att if a["status"] == "ok"), key=lambda a: a["accuracy_drop"]
        )
        p50_ratio, size_ratio = chosen["p50_ms"] / plain["p50_ms"], chosen["size_bytes"] / plain["size_bytes"]
        ok = met and p50_ratio <= RATIO and size_ratio <= RATIO
        rows.append(
            [
                f"{name} {fmt}",
                f"{plain['accuracy_drop']:+.2f}",
                _chosen_recipe(chosen),
                f"{chosen['accuracy_drop']:+.2f}",
                f"{plain.get('output_snr_db')} -> {chosen.get('output_snr_db')}",
                f"{size_ratio:.2f}x",
                f"{p50_ratio:.2f}x",
                f"{wall:.0f}",
                "PASS" if ok else "FAIL",
            ]
        )
    return rows, files


class _Ort:
    """A bare ONNX Runtime session with ``run(batch)``: the same timing path for NNCF's file and ours."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.name = self.s.get_inputs()[0].name

    def run(self, batch):
        return self.s.run(None, {self.name: batch.astype("float32")})[0]


def _ort_accuracy_p50(path: Path, x, y) -> tuple[float, float]:
    import numpy as np

    s = _Ort(path)
    probs = np.concatenate([s.run(x[i : i + 1]) for i in range(len(x))])
    lat = latency.measure(lambda: _Ort(path), x[:1], budget_s=1.0)
    return float((probs.argmax(1) == y).mean()), lat.p50


def nncf_side_by_side(name: str, run: TrainedModel, out: Path, budget: float, ours: Path | None) -> list:
    """NNCF's ``quantize_with_accuracy_control`` (ONNX backend, ``max_drop`` = the budget) on the same float
    ONNX graph, calibration images (200, class-balanced) and held-out data as the doctor; p50 of both files
    through the same bare ONNX Runtime session (batch 1)."""
    import numpy as np

    try:
        import nncf
        import onnx
    except ImportError:
        return [f"{name} onnx", "nncf not installed (pip install 'edgetransfer[quant]')"] + ["-"] * 6
    (fp32,) = export(run, ["onnx"], [QuantRecipe.fp32()], out=out / f"{name}-nncf")
    held = held_out(run)
    cal = calibration_set(run.manifest, "auto", 200)
    ref_acc, ref_p50 = _ort_accuracy_p50(fp32.path, held.x, held.y)
    model = onnx.load(str(fp32.path))
    iname = model.graph.input[0].name
    items = [{iname: cal.images[i : i + 1]} for i in range(len(cal.images))]
    val = [({iname: held.x[i : i + 1]}, int(held.y[i])) for i in range(len(held.y))]

    def validate(m, data) -> tuple[float, list[float]]:
        import onnxruntime as ort

        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        hits = [float(np.argmax(s.run(None, feed)[0]) == label) for feed, label in data]
        return float(np.mean(hits)), hits

    start = time.perf_counter()
    q = nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(items),
        nncf.Dataset(val, lambda item: item[0]),
        validate,
        max_drop=budget / 100,
        subset_size=len(items),
    )
    wall = time.perf_counter() - start
    path = out / f"{name}-nncf" / "model_int8_nncf.onnx"
    onnx.save(q, str(path))
    acc, p50 = _ort_accuracy_p50(path, held.x, held.y)
    row = [f"{name} onnx", "NNCF accuracy control", f"{100 * (ref_acc - acc):+.2f}",
           f"{path.stat().st_size / 1e6:.2f} MB", f"{p50:.2f}", f"{wall:.0f}"]  # fmt: skip
    if ours is not None:
        o_acc, o_p50 = _ort_accuracy_p50(ours, held.x, held.y)
        row += [f"ours {100 * (ref_acc - o_acc):+.2f} pts, {ours.stat().st_size / 1e6:.2f} MB, {o_p50:.2f} ms"]
    else:
        row += ["-"]
    return [*row, f"fp32 {ref_p50:.2f} ms"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/quant-doctor"))
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--skip-hymenoptera", action="store_true")
    ap.add_argument("--formats", nargs="+", default=["tflite", "onnx"])
    cases = ["digits", "hymenoptera", *FRAGILE]
    ap.add_argument("--cases", nargs="+", default=cases, choices=cases)
    ap.add_argument("--sizes", nargs="+", type=int, default=[96, 128], help="digits input sizes (px)")
    ap.add_argument("--no-nncf", action="store_true", help="skip NNCF's accuracy-controlled quantization")
    ap.add_argument("--integer", action="store_true", help="add QAT / learned rounding / bias correction columns")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs: list[tuple[str, TrainedModel]] = []
    digits = samples.write_digits(args.out / "digits") if set(args.cases) - {"hymenoptera"} else None
    if "digits" in args.cases:
        for size in args.sizes:
            cfg = dataclasses.replace(TRAIN, image_size=size)
            runs.append((f"digits{size}", _run(digits, cfg, args.out / f"digits-run{size}")))
    for name in FRAGILE:
        if name in args.cases:
            runs.append((name, _run(digits, FRAGILE[name], args.out / f"{name}-run")))
    if "hymenoptera" in args.cases and not args.skip_hymenoptera and HYMENOPTERA.is_dir():
        cfg = dataclasses.replace(TRAIN, image_size=224, epochs=20)
        runs.append(("hymenoptera", _run(HYMENOPTERA, cfg, args.out / "hym-run")))
    rows, nncf_rows = [], []
    for name, run in runs:
        r, files = case(name, run, args.out, args.budget, args.formats)
        rows += r
        if not args.no_nncf and "onnx" in files:
            nncf_rows.append(nncf_side_by_side(name, run, args.out, args.budget, files["onnx"]))
    print(f"\nmax accuracy drop {args.budget} points; size, p50 against the plain int8 file; load {_load()}")
    head = ["case", "plain drop", "chosen recipe", "drop pts", "SNR dB", "size", "p50", "search s", ""]
    print(table(rows, head))
    if nncf_rows:
        print("\nNNCF quantize_with_accuracy_control (ONNX, max_drop = the budget) beside the doctor's ONNX file")
        head = ["case", "tool", "drop pts", "size", "p50 ms", "time s", "ours (same session)", "fp32 p50"]
        print(table(nncf_rows, head))
    if args.integer:
        import quant_integer  # beside this file; imports this module, so only here

        irows = [r for name, run in runs for r in quant_integer.case(name, run, args.out, args.formats, 3)]
        print("\nInteger-only remedies (benchmarks/quant_integer.py)")
        print(table(irows, quant_integer.HEAD))
    return 0 if all(r[-1] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
