"""Every artifact of a trained run on every target: accuracy, latency (measured or estimated).

    python benchmarks/latency.py [--run RUN_DIR] [--data DIR] [--budget-s 3]

Without --run it trains EfficientNet-Lite0 (features workflow) on hymenoptera first and
exports TFLite fp32/fp16/dynamic/int8/int16x8 and ONNX fp32/fp16/dynamic/int8. Prints the
artifact x target table, the int8 TFLite vs Keras float speed-up measured in the same run,
and the cost model's error against the published EfficientNet-Lite0 figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = [
    "host-cpu",
    "pixel4-cpu",
    "pixel4-gpu",
    "edgetpu",
    "rpi4",
    "nnapi",
    "jetson-orin",
    "apple-ane",
    "hexagon-qnn",
]
# tensorflow/tpu models/official/efficientnet/lite/README.md (Lite0, 224 px)
PUBLISHED = [
    ("pixel4-cpu", "fp32", 12.0),
    ("pixel4-cpu", "int8", 6.5),
    ("pixel4-gpu", "fp32", 9.0),
    ("pixel4-gpu", "fp16", 6.0),
    ("edgetpu", "int8", 3.8),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera"))
    ap.add_argument("--run", help="a finished run directory (skips training)")
    ap.add_argument("--budget-s", type=float, default=3.0)
    args = ap.parse_args()
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.quantization import QuantRecipe
    from edgetransfer.flows.validate import validate
    from edgetransfer.training import TrainConfig, TrainedModel, train

    if args.run:
        run = TrainedModel.from_dir(args.run)
    else:
        run = train(args.data, TrainConfig(workflow="features"), out=Path(tempfile.mkdtemp()) / "run")
    recipes = [
        QuantRecipe.fp32(),
        QuantRecipe.fp16(),
        QuantRecipe.dynamic(),
        QuantRecipe.int8(),
        QuantRecipe.int16x8(),
    ]
    arts = export(run, ["all"], recipes)
    rep = validate([a.path for a in arts], args.data, TARGETS, budget_s=args.budget_s, skip_incompatible=True)
    print(
        f"\n{run.manifest.backbone} {run.input_size}px, float accuracy {rep.reference.accuracy:.4f}; "
        f"host {rep.host['cpu']} ({rep.host['cores']} cores)"
    )
    print(
        f"{'artifact':28s} {'target':12s} {'acc':>7s} {'agree':>6s} {'p50':>8s} {'p90':>8s} {'latency':>9s} {'MB':>6s}"
    )
    for r in rep.records:
        print(
            f"{Path(r.artifact).name:28s} {r.target:12s} {r.accuracy:7.4f} {r.agreement:6.3f} {r.latency.p50:8.2f} "
            f"{r.latency.p90:8.2f} {r.latency.provenance:>9s} {r.size_bytes / 1e6:6.2f}"
        )
    keras = rep.reference.latency.p50
    host = {Path(r.artifact).name: r.latency.p50 for r in rep.records if r.target == "host-cpu"}
    print(f"\nKeras float (tf.function) p50 {keras:.2f} ms on host-cpu, same run")
    for name, p50 in sorted(host.items(), key=lambda kv: kv[1]):
        print(f"  {name:28s} {p50:8.2f} ms   {keras / p50:5.1f}x faster than Keras float")
    for t, b in rep.best.items():
        print(f"best on {t:12s}: {Path(b.artifact).name} ({b.p50_ms:.2f} ms, {b.provenance})")
    est = {
        (r.target, r.precision, r.format): r.latency.p50 for r in rep.records if r.latency.provenance == "estimated"
    }
    print("\ncost model vs published EfficientNet-Lite0 figures")
    for t, p, ms in PUBLISHED:
        e = est.get((t, p, "tflite"))
        if e is not None:
            print(
                f"  {t:11s} {p:5s} published {ms:5.1f} ms  estimated {e:6.2f} ms  error {100 * (e - ms) / ms:+6.1f}%"
            )
    for f in rep.findings:
        print("finding:", f)


if __name__ == "__main__":
    main()
