"""Integer end to end (issue 36): QAT, learned rounding and bias correction against plain int8, TFLite and ONNX.

Per case and format: the float model's held-out accuracy; then each int8 file's drop (points), host p50 (ms,
its default runtime: LiteRT / ONNX Runtime, batch 1), float ops between input and output (the format's
``float_op_reader``) and the seconds its recipe cost on top of the plain file; plus the plain float fine-tune
(same epochs, data, learning rate, no fake quantization) beside QAT: its wall time, its float accuracy and its
own int8 drop, so QAT's time and gain are read against the fine-tune it adds to.

    python benchmarks/quant_integer.py [--out /tmp/quant-integer] [--cases digits64 digits96 textures hymenoptera]
        [--formats tflite onnx] [--qat-epochs 3] [--skip plain_finetune]

Cases: digits at 64 and 96 px (benchmarks/quant_doctor.py's runs: Lite0 features, scikit-learn digits), the
texture folder (benchmarks/texture_data.py, 96 px) and hymenoptera (224 px, ../shared/datasets).
Measured numbers: docs/tasks/export-integer.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quant_cases import FRAGILE, HYMENOPTERA, _load, _run  # noqa: E402

from edgetransfer import metrics  # noqa: E402
from edgetransfer.cli._common import table  # noqa: E402
from edgetransfer.data import samples  # noqa: E402
from edgetransfer.evaluation.heldout import held_out, predict, probe_batch  # noqa: E402
from edgetransfer.exporter import export, formats, write_artifact  # noqa: E402
from edgetransfer.exporter.quantization import QuantRecipe, calibration_set  # noqa: E402
from edgetransfer.exporter.quantization import qat as qat_lib  # noqa: E402
from edgetransfer.exporter.quantization.integer import float_ops  # noqa: E402
from edgetransfer.flows.quickstart import TRAIN  # noqa: E402
from edgetransfer.runtime import (  # noqa: E402
    latency,  # noqa: E402
    load_session,
    runtime_for,
)
from edgetransfer.training import TrainedModel  # noqa: E402

VARIANTS = {
    "plain": {},
    "bias correction": {"weights": ("bias_correction",)},
    "learned rounding": {"weights": ("learned_rounding",)},
    "qat": {"qat_epochs": None},  # --qat-epochs
}


def measure(path: Path, x, y, n_classes: int) -> tuple[float, float]:
    """(accuracy, host p50 ms) of one file in its default runtime, batch 1."""
    probs = predict(load_session(path), x, str(path))
    acc = metrics.scores(probs, y, n_classes, str(path)).accuracy
    lat = latency.measure(lambda: runtime_for(path).load(path, None), probe_batch(x.shape[1]), budget_s=1.0)
    return acc, lat.p50


def case(name: str, run: TrainedModel, out: Path, fmts, epochs: int, skip=()) -> list[list]:
    held = held_out(run)
    ref = float((run.load_model().predict(held.x, verbose=0).argmax(1) == held.y).mean())
    rows = []
    plain_p50: dict[str, float] = {}
    for variant, fields in VARIANTS.items():
        if variant in skip:
            continue
        fields = {k: (epochs if v is None else v) for k, v in fields.items()}
        recipe = dataclasses.replace(QuantRecipe.int8(), **fields)
        start = time.perf_counter()
        arts = export(run, list(fmts), [recipe], out=out / name / variant.replace(" ", "_"))
        wall = time.perf_counter() - start
        for a in arts:
            acc, p50 = measure(a.path, held.x, held.y, len(run.classes))
            plain_p50.setdefault(a.format, p50)
            notes = a.manifest.recipe
            cost = notes.get("seconds", 0.0)
            rows.append([f"{name} {a.format}", variant, f"{100 * ref:.2f}", f"{100 * (ref - acc):+.2f}",
                         f"{p50:.2f} ({p50 / plain_p50[a.format]:.2f}x)", len(float_ops(a.format, a.path)),
                         f"{cost:.0f}" if cost else "-", f"{wall:.0f}"])  # fmt: skip
        print(table(rows[-len(arts) :], HEAD), flush=True)
    if "plain_finetune" not in skip:
        rows += plain_finetune(name, run, out, fmts, epochs, held)
    return rows


def plain_finetune(name: str, run: TrainedModel, out: Path, fmts, epochs: int, held) -> list[list]:
    """The float fine-tune QAT adds to, on the same data and settings without fake quantization: its wall time,
    its float accuracy and its own plain int8 drop (each format's writer on the fine-tuned model)."""
    model = run.load_model()
    calib = calibration_set(run.manifest, "auto", 200)
    rec = qat_lib.fine_tune(run, model, calib, epochs, simulate=False)
    print(f"{name}: float fine-tune, {epochs} epochs on {rec.images} images: {rec.seconds:.0f} s", flush=True)
    (out / name / "plain_finetune").mkdir(parents=True, exist_ok=True)
    ref = float((model.predict(held.x, verbose=0).argmax(1) == held.y).mean())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in fmts:
            src = formats.get(fmt).exporter_module().make_source(model, run.input_size, "nhwc", Path(tmp))
            a = write_artifact(src, run, fmt, QuantRecipe.int8() if fmt == "tflite" else QuantRecipe.int8("float32"),
                               calib, out / name / "plain_finetune", "nhwc")  # fmt: skip
            acc, p50 = measure(a.path, held.x, held.y, len(run.classes))
            rows.append([f"{name} {fmt}", f"float fine-tune {epochs} ep (then int8)", f"{100 * ref:.2f}",
                         f"{100 * (ref - acc):+.2f}", f"{p50:.2f}", len(float_ops(fmt, a.path)), f"{rec.seconds:.0f}",
                         "-"])  # fmt: skip
    print(table(rows, HEAD), flush=True)
    return rows


HEAD = ["case", "recipe", "float acc %", "drop pts", "p50 ms (vs plain)", "float ops", "recipe s", "export s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/quant-integer"))
    cases = ["digits64", "digits96", "textures", "hymenoptera"]
    ap.add_argument("--cases", nargs="+", default=cases, choices=cases)
    ap.add_argument("--formats", nargs="+", default=["tflite", "onnx"])
    ap.add_argument("--qat-epochs", type=int, default=qat_lib.DEFAULT_EPOCHS)
    ap.add_argument("--skip", nargs="*", default=[], choices=[*VARIANTS, "plain_finetune"])
    args = ap.parse_args()
    print(f"load {_load()}; CPU flags: {_cpu_flags()}", flush=True)
    rows = []
    digits = samples.write_digits(args.out / "digits") if any(c.startswith("digits") for c in args.cases) else None
    for name in args.cases:
        if name == "digits64":
            run = _run(digits, FRAGILE["digits64"], args.out / "digits64-run")
        elif name == "digits96":
            run = _run(digits, dataclasses.replace(TRAIN, image_size=96), args.out / "digits-run96")
        elif name == "textures":
            from texture_data import build

            folder = args.out / "textures"
            if not folder.is_dir():
                build(folder)
            run = _run(folder, dataclasses.replace(TRAIN, image_size=96), args.out / "textures-run")
        else:
            if not HYMENOPTERA.is_dir():
                continue
            run = _run(HYMENOPTERA, dataclasses.replace(TRAIN, image_size=224, epochs=20), args.out / "hym-run")
        rows += case(name, run, args.out, args.formats, args.qat_epochs, args.skip)
    print(f"\nall cases, load {_load()}")
    print(table(rows, HEAD))
    return 0


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f in flags)


if __name__ == "__main__":
    sys.exit(main())
