"""Both training workflows on the same data, same head epochs, one run: accuracy and wall time.

    python benchmarks/train_workflows.py [--data ../shared/datasets/hymenoptera] [--epochs 10]

Prints a table: workflow, val accuracy, wall seconds, images/s, and the ratio of wall times.
The features run starts with a cold feature cache (its own temporary cache dir), so the
time includes the one pass through the backbone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera"))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=10, help="head epochs, the same for both workflows")
    ap.add_argument("--fine-tune-epochs", type=int, default=10)
    args = ap.parse_args()
    os.environ["EDGETRANSFER_CACHE"] = tempfile.mkdtemp(prefix="et-bench-")  # cold caches
    from edgetransfer.training import TrainConfig, train

    rows = []
    for workflow, unfreeze in (("features", "auto"), ("fine-tune", "auto"), ("fine-tune", "all")):
        cfg = TrainConfig(
            backbone=args.backbone,
            workflow=workflow,
            epochs=args.epochs,
            unfreeze=unfreeze,
            fine_tune_epochs=args.fine_tune_epochs if workflow == "fine-tune" else 0,
            patience=args.epochs,
        )
        out = Path(tempfile.mkdtemp(prefix="et-run-")) / workflow
        start = time.perf_counter()
        run = train(args.data, cfg, out=out)
        wall = time.perf_counter() - start
        m = run.manifest.to_json()
        name = workflow if unfreeze == "auto" else f"{workflow} (unfreeze {unfreeze})"
        rows.append((name, m["metrics"]["val_accuracy"], wall, m["images_per_second"], len(m["history"]["loss"])))
    print(f"\n{args.backbone} on {args.data}, {args.epochs} head epochs (fine-tune adds {args.fine_tune_epochs})")
    print(f"{'workflow':26s} {'val_acc':>8s} {'wall_s':>8s} {'img/s':>8s} {'epochs':>7s}")
    for w, acc, wall, ips, ep in rows:
        print(f"{w:26s} {acc:8.4f} {wall:8.1f} {ips:8.1f} {ep:7d}")
    for w, _, wall, _, _ in rows[1:]:
        print(f"{w} / features wall time: {wall / rows[0][2]:.1f}x")


if __name__ == "__main__":
    main()
