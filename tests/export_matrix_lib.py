"""The export matrix: every backbone x format x precision, exported and run once.

Shared by ``tests/unit/exporter/test_export_matrix.py`` and ``benchmarks/export_matrix.py``. Pairs that
are known not to work are listed in :data:`KNOWN_FAILURES` with the reason; the test
asserts the list, so it cannot silently grow.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgetransfer import backbones
from edgetransfer.errors import EdgeTransferError
from edgetransfer.exporter import formats
from edgetransfer.exporter.quantization import QuantRecipe
from edgetransfer.training import TrainedModel

# (backbone, format, precision) -> why it fails. Measured with TF 2.21 / tf2onnx 1.17 /
# ONNX Runtime 1.31 at 32 px; keep in step with benchmarks/export_matrix.py output.
_HARD_SWISH = "TF converter: 'Quantization to 16x8-bit not yet supported for op: HARD_SWISH' (any weights)"
_UNTRAINED_16X8 = (
    "untrained (weights=none) ReLU6 graph: LiteRT's int16x8 kernels refuse its degenerate requantization "
    "scale at load (kernel_util no_integer_overflow_from_quantization); trained EfficientNet-Lite0 "
    "int16x8 converts and runs (tests/unit/exporter/test_export.py)"
)
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {
    **{(n, "tflite", "int16x8"): _HARD_SWISH for n in ("mobilenet_v3_small", "mobilenet_v3_large")},
    **{
        (n, "tflite", "int16x8"): _UNTRAINED_16X8
        for n in (
            "mobilenet_v1",
            "mobilenet_v2_035",
            "mobilenet_v2_050",
            "mobilenet_v2_075",
            "mobilenet_v2",
            "mobilenet_v2_130",
            "mobilenet_v2_140",
            "efficientnet_lite0",
            "efficientnet_lite1",
            "efficientnet_lite2",
            "efficientnet_lite3",
            "efficientnet_lite4",
        )
    },
}


@dataclass(frozen=True)
class MatrixRow:
    format: str
    precision: str
    result: str  # ok | failed | known
    size_bytes: int
    seconds: float
    note: str = ""


def synthetic_run(backbone: str, out: Path, *, size: int = 32, classes: int = 2) -> TrainedModel:
    """An untrained classifier (weights none) saved as a run directory, with noise images
    to calibrate on: enough to exercise every converter, not to judge accuracy."""
    from edgetransfer.training.model import classifier

    out.mkdir(parents=True, exist_ok=True)
    spec = backbones.get(backbone)
    base = backbones.build(spec, weights="none", input_size=size)
    model = classifier(base, classes, 0.0, size, f"{backbone}_classifier")
    model.save(out / "model.keras")
    calib = out / "calibration"
    calib.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    manifest = {
        "kind": "edgetransfer.run",
        "schema": 2,
        "backbone": backbone,
        "weights": "none",
        "input_size": size,
        "preprocess": spec.preprocess.to_json(),
        "resize_policy": "crop",
        "classes": [f"class{i}" for i in range(classes)],
        "data": {"root": str(calib), "fingerprint": "synthetic"},
        "config": {},
        "metrics": {"val_accuracy": None},
        "files": {"model": "model.keras"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return TrainedModel.from_dir(out)


def export_backbone(
    backbone: str, work: Path, *, size: int = 32, only: tuple[str, ...] | None = None
) -> list[MatrixRow]:
    """Export one backbone to every supported pair (``only`` these precisions), run each file once; never raises."""
    from edgetransfer.runtime import load_session

    run = synthetic_run(backbone, work, size=size)
    keras_model = run.load_model()
    x = np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    ref = np.asarray(keras_model.predict(x, verbose=0))
    rows = []
    for fmt in formats.file_formats():  # packagings (tflm) are not file formats
        precisions = [p for p in formats.get(fmt).precisions if only is None or p in only]
        recipes = [QuantRecipe.named(p, calibration_size=8) for p in precisions]
        start = time.perf_counter()
        # known failures alone, so the rest share one trace (a failed batch is retried one by one)
        known = [r for r in recipes if (backbone, fmt, r.precision) in KNOWN_FAILURES]
        arts, errors = {}, {}
        for batch in ([r for r in recipes if r not in known], *([r] for r in known)):
            a, e = _export_all(run, fmt, batch, work) if batch else ({}, {})
            arts.update(a)
            errors.update(e)
        per_file = (time.perf_counter() - start) / len(recipes)
        for p in precisions:
            try:
                if p not in arts:
                    raise RuntimeError(errors.get(p, "not exported"))
                art = arts[p]
                out = load_session(art.path).run(x)
                ok = out.shape == ref.shape and np.isfinite(out).all()
                note = f"max|diff| {np.abs(out - ref).max():.1e}" if ok else f"bad output {out.shape}"
                if ok and p == "fp32" and np.abs(out - ref).max() > 1e-4:
                    ok, note = False, f"fp32 disagrees with Keras: {note}"
                size_b = art.size_bytes
            except (EdgeTransferError, RuntimeError, ValueError) as exc:
                ok, note, size_b = False, str(exc).splitlines()[0][:160], 0
            known = KNOWN_FAILURES.get((backbone, fmt, p))
            result = "ok" if ok else ("known" if known else "failed")
            rows.append(MatrixRow(fmt, p, result, size_b, per_file, known or note))
    return rows


def _export_all(run, fmt: str, recipes: list[QuantRecipe], work: Path) -> tuple[dict, dict]:
    """One export call per format (the model is traced once); if any precision fails,
    each is retried alone so one failure does not hide the others."""
    from edgetransfer.exporter.artifacts import export

    kwargs = {"out": work / "export", "calibration": work / "calibration"}
    try:
        return {a.precision: a for a in export(run, [fmt], recipes, **kwargs)}, {}
    except (EdgeTransferError, RuntimeError, ValueError):
        pass
    arts, errors = {}, {}
    for r in recipes:
        try:
            arts[r.precision] = export(run, [fmt], [r], **kwargs)[0]
        except (EdgeTransferError, RuntimeError, ValueError) as exc:
            errors[r.precision] = str(exc).splitlines()[0][:160]
    return arts, errors


def print_accuracy_table(run_dir: str | Path) -> None:
    """Accuracy of every artifact in ``<run>/export`` on the run's val split vs Keras."""
    from edgetransfer import data as data_lib
    from edgetransfer import images
    from edgetransfer.runtime import load_session

    run = TrainedModel.from_dir(run_dir)
    cfg = run.manifest.config
    ds = data_lib.load(run.manifest.data.root, val_split=cfg.get("val_split"), seed=cfg.get("seed", 0))
    val = ds.split("val")
    x = np.stack([images.load_array(f.path, run.input_size) for f in val]).astype(np.float32)
    y = np.array([f.label for f in val])
    ref = np.asarray(run.load_model().predict(x, verbose=0))
    base = float((ref.argmax(1) == y).mean())
    files = sorted((run.run_dir / "export").glob("*.tflite")) + sorted((run.run_dir / "export").glob("*.onnx"))
    sizes = {f.suffix: f.stat().st_size for f in files if "fp32" in f.name}
    print(
        f"\n{'artifact':28s} {'acc':>7s} {'drop_pt':>8s} {'agree':>7s} {'max|diff|':>9s} {'size_MB':>8s} {'fp32/size':>9s}"
    )
    print(f"{'keras float':28s} {base:7.4f}")
    for f in files:
        sess = load_session(f)
        out = np.concatenate([sess.run(x[i : i + 1]) for i in range(len(x))])
        acc = float((out.argmax(1) == y).mean())
        print(
            f"{f.name:28s} {acc:7.4f} {100 * (base - acc):8.2f} {(out.argmax(1) == ref.argmax(1)).mean():7.4f} "
            f"{np.abs(out - ref).max():9.2e} {f.stat().st_size / 1e6:8.2f} {sizes.get(f.suffix, 0) / f.stat().st_size:9.2f}"
        )
