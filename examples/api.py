"""The Python API end to end: train, export, validate, check, then classify like an app.

python examples/api.py [DATA_DIR]    # default: ../shared/datasets/hymenoptera
"""

import sys
from pathlib import Path

from edgetransfer import Budget, Classifier, QuantRecipe, TrainConfig, check, export, train, validate

data = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera")
out = Path("runs/api-example")

run = train(data, TrainConfig(backbone="efficientnet_lite0", workflow="features", epochs=10), out=out / "run")
print(f"trained: {run.manifest.workflow} ({run.manifest.reason}), val accuracy {run.val_accuracy:.4f}")

artifacts = export(run, ["tflite", "onnx"], [QuantRecipe.fp16(), QuantRecipe.int8(io="uint8")])
for a in artifacts:
    print(f"exported {a.path.name}: {a.size_bytes / 1e6:.2f} MB")

# held-out data: the run's own validation split (as its manifest records it)
report = validate([a.path for a in artifacts], target_names=["host-cpu", "pixel4-cpu"], skip_incompatible=True)
print(f"evaluated on {report.held_out.images} images ({report.held_out.split})")
for target, best in report.best.items():
    runtime = f" with {best.runtime}" if best.runtime else ""
    print(f"best on {target}: {Path(best.artifact).name}{runtime} at {best.p50_ms:.2f} ms ({best.provenance})")

int8 = next(a for a in artifacts if a.format == "tflite" and a.precision == "int8")
verdict = check(int8.path, "pixel4-cpu", data_dir=data, budget=Budget(latency_p90_ms=15, accuracy_drop=1.0))
print(f"budgets on pixel4-cpu: {verdict.status}")
for c in verdict.checks:
    print("  ", c.message)

app = Classifier(int8.path)  # what an app does: needs only `pip install "edgetransfer[runtime]"`
image = next((data / "val" / run.classes[-1]).glob("*.jpg"))
print(f"{image.name}: {app.classify(image, top=2)}")
sys.exit(verdict.exit_code)
