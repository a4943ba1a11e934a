"""Both training workflows on the same data and head epochs, over several seeds: accuracy and wall time.

    python benchmarks/train_workflows.py [--data ../shared/datasets/hymenoptera] [--seeds 0 1 2]

Runs ``features`` and ``fine-tune`` (auto unfreeze depth; ``--all`` adds ``--unfreeze all``)
once per seed and prints each run, then per workflow the mean and spread (min-max, and the
sample standard deviation) of validation accuracy and of wall time, and the wall-time ratio
to ``features``. Each features run starts with a cold feature cache (its own temporary
cache dir), so its time includes the one pass through the backbone.

``--resplit K`` pools the train and val folders and draws K new stratified splits of the
same sizes (split k with seed k), so a comparison rests on K different held-out sets rather
than one: with 153 val images one image is 0.65 points, and three seeds on one split cannot
tell a one-image gain from noise. It also prints the paired difference per split.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _resplit(data: Path, k: int, root: Path) -> tuple[Path, Path]:
    """Copies of ``data``'s train+val images in a new stratified split, seeded by ``k``,
    with each class's val count as in the original (``<root>/split<k>/{train,val}/<class>``)."""
    import random
    import shutil

    out = root / f"split{k}"
    if out.exists():
        return out / "train", out / "val"
    rng = random.Random(k)
    for cls in sorted(p.name for p in (data / "train").iterdir() if p.is_dir()):
        files = sorted(f for s in ("train", "val") for f in (data / s / cls).iterdir() if f.is_file())
        rng.shuffle(files)
        n_val = sum(1 for f in (data / "val" / cls).iterdir() if f.is_file())
        for split, chosen in (("val", files[:n_val]), ("train", files[n_val:])):
            (out / split / cls).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy2(f, out / split / cls / f.name)
    return out / "train", out / "val"


def _one(args, workflow: str, unfreeze: str, seed: int) -> tuple[float, float, int]:
    from edgetransfer.training import TrainConfig, train

    os.environ["EDGETRANSFER_CACHE"] = tempfile.mkdtemp(prefix="et-bench-")  # cold caches
    cfg = TrainConfig(
        backbone=args.backbone,
        workflow=workflow,
        epochs=args.epochs,
        unfreeze=unfreeze,
        fine_tune_epochs=args.fine_tune_epochs if workflow == "fine-tune" else 0,
        patience=args.patience,
        seed=seed,
    )
    out = Path(tempfile.mkdtemp(prefix="et-run-")) / workflow
    start = time.perf_counter()
    if args.resplit:
        train_dir, val_dir = _resplit(Path(args.data), seed, Path(args.split_root))
        m = train(train_dir, cfg, val_data=val_dir, out=out).manifest.to_json()
    else:
        m = train(args.data, cfg, out=out).manifest.to_json()
    return m["metrics"]["val_accuracy"], time.perf_counter() - start, len(m["history"]["loss"])


def _spread(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.4f} +- {sd:.4f} [{min(xs):.4f}, {max(xs):.4f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    here = Path(__file__).resolve()
    # ../shared beside the checkout, or beside the folder of worktrees (/work/wt/<name>)
    near = [p / "shared/datasets/hymenoptera" for p in (here.parents[2], here.parents[3])]
    ap.add_argument("--data", default=str(next((p for p in near if p.is_dir()), near[0])))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=10, help="head epochs, the same for both workflows")
    ap.add_argument("--fine-tune-epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=10, help="10 = the head epochs: no early stop")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--all", action="store_true", help="also fine-tune with --unfreeze all")
    ap.add_argument("--workflows", nargs="+", default=["features", "fine-tune"])
    ap.add_argument(
        "--resplit",
        type=int,
        default=0,
        help="K new train/val splits of the pooled images (seeds 0..K-1)",
    )
    args = ap.parse_args()
    if args.resplit:
        args.seeds = list(range(args.resplit))
        args.split_root = tempfile.mkdtemp(prefix="et-splits-")
    variants = [(w, "auto") for w in args.workflows] + ([("fine-tune", "all")] if args.all else [])
    results: dict[str, list[tuple[float, float, int]]] = {}
    for seed in args.seeds:
        for workflow, unfreeze in variants:
            name = workflow if unfreeze == "auto" else f"{workflow} (unfreeze {unfreeze})"
            acc, wall, epochs = _one(args, workflow, unfreeze, seed)
            results.setdefault(name, []).append((acc, wall, epochs))
            print(f"seed {seed} {name:26s} val_acc {acc:.4f} wall {wall:7.1f} s epochs {epochs}", flush=True)
    print(f"\n{args.backbone} on {args.data}, {args.epochs} head epochs (fine-tune adds {args.fine_tune_epochs}),")
    where = f"{args.resplit} re-drawn train/val splits (seed k on split k)" if args.resplit else f"seeds {args.seeds}"
    print(f"patience {args.patience}, {where}: mean +- sd [min, max]")
    print(f"{'workflow':26s} {'val_acc':40s} {'wall_s':>24s}")
    for name, rows in results.items():
        accs, walls = [r[0] for r in rows], [r[1] for r in rows]
        print(f"{name:26s} {_spread(accs):40s} {statistics.mean(walls):8.1f} [{min(walls):.0f}, {max(walls):.0f}]")
    base = results.get("features")
    for name, rows in results.items():
        if base and name != "features":
            ratio = statistics.mean(r[1] for r in rows) / statistics.mean(r[1] for r in base)
            print(f"{name} / features mean wall time: {ratio:.1f}x")
            diffs = [r[0] - b[0] for r, b in zip(rows, base)]  # paired: same seed (and split)
            print(f"{name} - features val_acc, paired by seed: {_spread(diffs)}")


if __name__ == "__main__":
    main()
