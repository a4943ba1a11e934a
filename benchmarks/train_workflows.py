"""Both training workflows on the same data and head epochs, over several seeds: accuracy and wall time.

    python benchmarks/train_workflows.py [--data ../shared/datasets/hymenoptera] [--seeds 0 1 2]

Runs ``features`` and ``fine-tune`` (auto unfreeze depth; ``--all`` adds ``--unfreeze all``)
once per seed and prints each run, then per workflow the mean and spread (min-max, and the
sample standard deviation) of validation accuracy and of wall time, and the wall-time ratio
to ``features``. Each features run starts with a cold feature cache (its own temporary
cache dir), so its time includes the one pass through the backbone.

``--distill`` compares, per seed, a student (``--backbone``) trained plainly, trained on the
teacher's augmented views with hard labels only (``alpha 0``: what the views alone give),
and distilled from a teacher (``--teacher-backbone`` at its own size, the same workflow,
trained first with the same seed), plus the teacher itself; then checks the distilled
student is the plain student's graph (Keras config equal, TFLite op list and size equal)
and measures both TFLite files' host p50. One feature cache serves all of it.

    python benchmarks/train_workflows.py --distill --seeds 0 1 2 [--distill-workflow features]

``--auto`` runs ``--workflow auto`` against each by-hand choice ({features, features at
``stride16``, fine-tune, fine-tune all}) per seed: which workflow auto chose and why, its
accuracy against the best by hand, and its wall time against trying them all.

    python benchmarks/train_workflows.py --auto --data DIGITS --image-size 64 --seeds 0

``--data textures`` builds the 10-class grey texture and micrograph folder of
``benchmarks/texture_data.py`` (far from ImageNet, offline) into a temporary folder first:

    python benchmarks/train_workflows.py --distill --data textures --image-size 96 --seeds 0 1 2

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


def _distill(args) -> None:
    from edgetransfer.training import TrainConfig, train

    os.environ.setdefault("EDGETRANSFER_CACHE", tempfile.mkdtemp(prefix="et-bench-"))
    root = Path(tempfile.mkdtemp(prefix="et-distill-"))
    common = dict(
        image_size=args.image_size,  # None: each backbone at its own size
        workflow=args.distill_workflow,
        epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs if args.distill_workflow == "fine-tune" else 0,
        patience=args.patience,
    )
    kw = dict(distill_temperature=args.temperature, distill_alpha=args.alpha, distill_views=args.views)
    rows: dict[str, list[float]] = {}
    runs: dict[str, Path] = {}
    for seed in args.seeds:
        teacher = root / f"teacher{seed}"
        variants = [
            (
                "teacher " + args.teacher_backbone,
                TrainConfig(backbone=args.teacher_backbone, seed=seed, **{**common, "image_size": args.teacher_size}),
                teacher,
            ),
            ("student plain", TrainConfig(backbone=args.backbone, seed=seed, **common), None),
            (
                f"student views x{args.views}, alpha 0",
                TrainConfig(
                    backbone=args.backbone, seed=seed, teacher=str(teacher), **common, **{**kw, "distill_alpha": 0.0}
                ),
                None,
            ),
            (
                "student distilled",
                TrainConfig(backbone=args.backbone, seed=seed, teacher=str(teacher), **common, **kw),
                None,
            ),
        ]
        for name, cfg, out in variants:
            out = out or root / f"{name.replace(' ', '_').replace(',', '')}{seed}"
            start = time.perf_counter()
            m = train(args.data, cfg, out=out).manifest
            acc = m.metrics.val_accuracy
            rows.setdefault(name, []).append(acc)
            runs[name] = out
            print(f"seed {seed} {name:32s} val_acc {acc:.4f} wall {time.perf_counter() - start:7.1f} s", flush=True)
    where = f"{args.distill_workflow} workflow, seeds {args.seeds}"
    print(
        f"\n{args.data}: {where}; T {args.temperature:g}, alpha {args.alpha:g}, {args.views} views;"
        " mean +- sd [min, max]"
    )
    for name, accs in rows.items():
        print(f"{name:32s} {_spread(accs)}")
    plain = rows["student plain"]
    for name in list(rows)[2:]:
        print(f"{name} - student plain, paired by seed: {_spread([a - b for a, b in zip(rows[name], plain)])}")
    _same_graph(runs["student plain"], runs["student distilled"])


def _auto(args) -> None:
    from edgetransfer.training import TrainConfig, train

    os.environ.setdefault("EDGETRANSFER_CACHE", tempfile.mkdtemp(prefix="et-bench-"))
    root = Path(tempfile.mkdtemp(prefix="et-auto-"))
    common = dict(backbone=args.backbone, image_size=args.image_size, epochs=args.epochs, patience=args.patience)
    variants = {
        "auto": dict(workflow="auto", fine_tune_epochs=args.fine_tune_epochs),
        "features": dict(workflow="features"),
        "features stride16": dict(workflow="features", cut_at="stride16"),
        "fine-tune": dict(workflow="fine-tune", fine_tune_epochs=args.fine_tune_epochs),
        "fine-tune all": dict(workflow="fine-tune", unfreeze="all", fine_tune_epochs=args.fine_tune_epochs),
    }
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        for name, kw in variants.items():
            start = time.perf_counter()
            m = train(args.data, TrainConfig(**common, **kw, seed=seed), out=root / f"{name}{seed}".replace(" ", "_"))
            acc, wall = m.manifest.metrics.val_accuracy, time.perf_counter() - start
            rows.setdefault(name, []).append((acc, wall))
            extra = f"  -> {m.manifest.workflow}: {m.manifest.reason}" if name == "auto" else ""
            print(f"seed {seed} {name:18s} val_acc {acc:.4f} wall {wall:7.1f} s{extra}", flush=True)
    print(
        f"\n{args.data}, {args.backbone} at {args.image_size or 'its'} px, seeds {args.seeds}: mean +- sd [min, max]"
    )
    for name, r in rows.items():
        print(f"{name:18s} {_spread([a for a, _ in r]):40s} wall {statistics.mean(w for _, w in r):7.1f} s")
    best = max((statistics.mean(a for a, _ in r), n) for n, r in rows.items() if n != "auto")
    by_hand = sum(w for n, r in rows.items() if n != "auto" for _, w in r)
    auto_acc = statistics.mean(a for a, _ in rows["auto"])
    print(f"auto - best by hand ({best[1]}): {auto_acc - best[0]:+.4f}")
    print(f"auto wall / all by hand: {sum(w for _, w in rows['auto']) / by_hand:.2f}")


def _same_graph(plain: Path, distilled: Path) -> None:
    """The distilled student is the plain one's graph: Keras configs, TFLite ops and sizes, host p50."""
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.runtime.__main__ import bench
    from edgetransfer.training import TrainedModel

    a, b = (TrainedModel.from_dir(p).load_model() for p in (plain, distilled))
    print(f"Keras model config equal: {a.get_config() == b.get_config()}")
    files = [export(p, ["tflite"], out=p / "export")[0].path for p in (plain, distilled)]
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter  # type: ignore[no-redef]
    ops = [sorted(d["op_name"] for d in Interpreter(str(f))._get_ops_details()) for f in files]
    sizes = [Path(f).stat().st_size for f in files]
    print(f"TFLite op lists equal: {ops[0] == ops[1]} ({len(ops[0])} ops); sizes {sizes[0]} / {sizes[1]} bytes")
    p50s: dict[str, list[float]] = {"plain": [], "distilled": []}
    for _ in range(6):  # interleaved rounds, so both files see the same load on a shared machine
        for name, f in zip(p50s, files):
            p50s[name].append(bench(str(f), None, 1.5, 3, 20, "cpu").p50)
    for name, v in p50s.items():
        print(f"host p50 {name:10s} median {statistics.median(v):.2f} ms over 6 rounds {[round(x, 1) for x in v]}")


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
    ap.add_argument("--distill", action="store_true", help="student with/without a teacher (see above)")
    ap.add_argument("--teacher-backbone", default="efficientnet_lite2")
    ap.add_argument("--teacher-size", type=int, default=None, help="the teacher's input side (default: --image-size)")
    ap.add_argument("--distill-workflow", default="features", choices=["features", "fine-tune"])
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--auto", action="store_true", help="--workflow auto against each choice by hand")
    ap.add_argument("--image-size", type=int, default=None)
    args = ap.parse_args()
    args.teacher_size = args.teacher_size or args.image_size
    if args.data == "textures":
        sys.path.insert(0, str(here.parent))
        from texture_data import build

        args.data = str(build(tempfile.mkdtemp(prefix="et-textures-"), size=args.image_size or 96))
        print(f"textures (benchmarks/texture_data.py, 10 classes, 40 train / 20 val each): {args.data}")
    if args.auto:
        _auto(args)
        return
    if args.distill:
        _distill(args)
        return
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
