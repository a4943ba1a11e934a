"""Do MediaPipe Tasks and edgetransfer's runtime agree on every exported TFLite precision?

    python benchmarks/mediapipe_roundtrip.py [--data ../shared/datasets/hymenoptera] [--size 224] [--run RUN_DIR]

Trains EfficientNet-Lite0 features at ``--size`` on ``--data`` (or reuses ``--run``), exports fp32, fp16,
dynamic, int8 (uint8 io) and int16x8 TFLite files, and classifies the val split with both
``mediapipe.tasks.python.vision.ImageClassifier`` (mediapipe 1.2.2 in its own venv, see
``tests/mediapipe_lib.py``) and ``edgetransfer.runtime.Classifier``. Both get the same
uint8 pixels (decoded and resized once by the Classifier's preprocessing), so any disagreement is the
runtimes', not the resizing's. Prints top-1 agreement per precision (target >= 99%) and each one's accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetransfer import data as data_lib
from edgetransfer.exporter.artifacts import export

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the MediaPipe venv helper
import mediapipe_lib as mediapipe_check  # noqa: E402

from edgetransfer.exporter.quantization import QuantRecipe
from edgetransfer.runtime import Classifier
from edgetransfer.training import TrainConfig, TrainedModel, train

RECIPES = [QuantRecipe.fp32(), QuantRecipe.fp16(), QuantRecipe.dynamic(), QuantRecipe.int8(), QuantRecipe.int16x8()]


def _default_data() -> str:
    """``shared/datasets/hymenoptera`` beside the checkout or one of its parents (worktrees nest deeper)."""
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / "shared/datasets/hymenoptera").is_dir():
            return str(parent / "shared/datasets/hymenoptera")
    return "../shared/datasets/hymenoptera"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=_default_data())
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--run", help="reuse this trained run instead of training")
    ap.add_argument("--out", help="work folder (default: a new temporary one)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="et-mp-roundtrip-"))
    start = time.perf_counter()
    python = mediapipe_check.venv_python()
    print(
        f"# mediapipe {mediapipe_check.MEDIAPIPE_VERSION}: {python} ({time.perf_counter() - start:.0f} s)", flush=True
    )
    if args.run:
        run = TrainedModel.from_dir(args.run)
    else:
        cfg = TrainConfig(backbone="efficientnet_lite0", image_size=args.size, workflow="features", epochs=args.epochs)
        run = train(args.data, cfg, out=work / "run")
    print(f"# run {run.run_dir} ({time.perf_counter() - start:.0f} s)", flush=True)
    arts = export(run, ["tflite"], RECIPES, out=work / "export")
    print(f"# exported {len(arts)} files ({time.perf_counter() - start:.0f} s)", flush=True)

    cfg = run.manifest.get("config", {})
    ds = data_lib.load(args.data, val_split=cfg.get("val_split", 0.2), seed=cfg.get("seed", 0))
    files = ds.split("val") or ds.files
    first = Classifier(arts[0].path)
    pixels = np.stack([np.clip(np.round(first.preprocess(f.path)[0]), 0, 255).astype(np.uint8) for f in files])
    labels = np.array([f.label for f in files])
    mp = mediapipe_check.classify(python, [a.path for a in arts], pixels)
    print(f"# mediapipe ran ({time.perf_counter() - start:.0f} s); {len(files)} val images\n")
    print(f"{'file':28s} {'agree top-1':>12s} {'names ok':>9s} {'acc mp':>7s} {'acc et':>7s} {'max|dp|':>8s}")
    for a in arts:
        clf = Classifier(a.path)
        ours = np.stack([clf.probabilities(x) for x in pixels])
        got = mp[a.path]
        if got.error:
            print(f"{a.path.name:28s} MediaPipe refused it: {got.error[:200]}")
            continue
        theirs = np.zeros_like(ours)
        for i, row in enumerate(got.categories):
            for idx, _, score in row:
                theirs[i, idx] = score
        names_ok = all(n == run.classes[i] for row in got.categories for i, n, _ in row)
        agree = (np.array(got.top1) == ours.argmax(1)).mean()
        print(
            f"{a.path.name:28s} {agree:11.2%} {names_ok!s:>9s} {(np.array(got.top1) == labels).mean():7.2%} "
            f"{(ours.argmax(1) == labels).mean():7.2%} {np.abs(theirs - ours).max():8.4f}",
            flush=True,
        )
    print(f"\n# total {time.perf_counter() - start:.0f} s; work folder {work}")


if __name__ == "__main__":
    main()
