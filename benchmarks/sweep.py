"""Model search on a real dataset: the table, the Pareto fronts, the picks, cold vs warm cache.

    python benchmarks/sweep.py [--data ../shared/datasets/hymenoptera] [--backbone NAME ...]
        [--image-size N ...] [--precision P ...] [--target T ...] [--max-latency-ms 8]

    python benchmarks/sweep.py --quick [--executor processes --jobs 2] [--base-tree DIR]

``--quick`` (the issue 30 measurement): a cold sweep (fresh cache, fresh --out), the warm sweep
(memo warm, fresh --out), and a second sweep into another --out with one more precision
(``--extra-precision``, default fp16), each with the share of conversions reused (exported files
whose manifest says ``converter.from: memo``). ``--base-tree`` times the same cold sweep with another
checkout (e.g. ``git archive <commit>`` of the code before a change) first, in the same sitting.

Without ``--quick`` it runs the same ``edgetransfer sweep`` four times, each a fresh process timed end to end:

1. cold: a fresh ``EDGETRANSFER_CACHE`` (weights conversion and every feature computed) and a fresh --out;
2. warm features, memo off (``EDGETRANSFER_MEMO=0``): a fresh --out, features reused; heads,
   conversions, predictions and latency redone;
3. warm features + memo: a fresh --out; heads retrained (the same, seeded), converted files and
   predictions taken from the memo (:mod:`edgetransfer.memo`), latency measured again;
4. resume: the warm command again on its own --out (every configuration skipped).

Then the picks at ``--max-latency-ms`` (reusing every configuration), with a check that each pick
meets the budget and that no configuration within it is more accurate.

    python benchmarks/sweep.py --teacher --backbone efficientnet_lite0 efficientnet_lite2 \
        --image-size 224 --precision fp32 int8

``--teacher`` (the issue 28 measurement): the grid without a teacher (cold caches, fresh --out), the
same grid with ``--teacher auto`` (cold caches, fresh --out), and ``--teacher auto`` added to the
finished plain sweep (its configurations reused: what adding a teacher later costs); then the
teacher, every configuration plain and distilled, both fronts per target and the wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sweep(
    args, out: Path, cache: Path, *extra: str, memo: bool = True, precisions=None, tree: Path = ROOT, spread=True
) -> tuple[dict, float, str]:
    cmd = [sys.executable, "-m", "edgetransfer", "sweep", "--data", args.data, "--out", str(out), "--epochs", "10"]
    for flag, values in (("--backbone", args.backbone), ("--image-size", args.image_size)):
        cmd += [x for v in values for x in (flag, str(v))]
    cmd += [x for v in (precisions or args.precision) for x in ("--precision", v)]
    cmd += [x for v in args.target for x in ("--target", v)]
    if spread and getattr(args, "executor", "local") != "local":
        cmd += ["--executor", args.executor] + (["--jobs", str(args.jobs)] if args.jobs else [])
    env = {**os.environ, "EDGETRANSFER_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(tree)}
    env["EDGETRANSFER_MEMO"] = "1" if memo else "0"
    start = time.perf_counter()
    text = subprocess.run([*cmd, *extra], cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if text.returncode not in (0, 1):
        sys.exit(f"sweep failed ({text.returncode}):\n{text.stderr[-3000:]}")
    return json.loads(text.stdout), seconds, text.stderr


def _check_pick(doc: dict, target: str, limit: float) -> str:
    """The property the issue asks for: the pick meets the budget and is the most accurate that does."""
    cfgs, b = doc["configs"], doc["best"][target]
    within = [i for i, c in enumerate(cfgs) if target in c["latency"] and c["latency"][target]["p90_ms"] <= limit]
    budget = doc["budgets"][target]
    within = [
        i
        for i in within
        if budget["max_accuracy_drop"] is None or cfgs[i]["accuracy_drop"] <= budget["max_accuracy_drop"]
    ]
    if b is None:
        return f"{target}: no pick; {len(within)} configurations within {limit} ms"
    ok = cfgs[b]["latency"][target]["p90_ms"] <= limit and all(
        cfgs[i]["accuracy"] <= cfgs[b]["accuracy"] for i in within
    )
    return f"{target} @ {limit} ms: pick #{b} meets the budget and is the most accurate within it: {ok}"


def _reuse(out: Path) -> tuple[int, int]:
    """(conversions taken from the memo, files exported) in this sweep's export folders."""
    mans = [json.loads(m.read_text()) for m in out.glob("exports/*/*.manifest.json")]
    return sum((m.get("converter") or {}).get("from") == "memo" for m in mans), len(mans)


def quick(args, work: Path) -> None:
    """Cold, warm, and a second --out with one more precision; the conversions each reused."""
    rows = []
    if args.base_tree:
        base_cache = work / "cache-base"
        doc, secs, _ = _sweep(args, work / "base-cold", base_cache, "--json", tree=Path(args.base_tree), spread=False)
        rows.append(("cold, code before (local)", secs, doc, work / "base-cold"))
    cache = work / "cache"
    runs = (
        ("cold", work / "cold", None),
        ("warm (fresh --out)", work / "warm", None),
        (f"second --out, +{args.extra_precision}", work / "second", [*args.precision, args.extra_precision]),
    )
    for name, out, precs in runs:
        doc, secs, _ = _sweep(args, out, cache, "--json", precisions=precs)
        rows.append((f"{name} ({args.executor})", secs, doc, out))
    cold = rows[0][1]
    for name, secs, doc, out in rows:
        hit, n = _reuse(out)
        s = doc["stats"]
        print(
            f"{name:34s} {secs:7.1f} s ({cold / secs:4.2f}x of the first row)  configs {s['configs']}  "
            f"conversions reused {hit}/{n} ({hit / max(n, 1):.0%})  "
            f"memo hit {s['memo_hits']} / miss {s['memo_misses']}"
        )
    ref = rows[0][2]["configs"]
    same = all(
        (a["accuracy"], a["size_bytes"]) == (b["accuracy"], b["size_bytes"])
        for a, b in zip(ref, rows[-2][2]["configs"], strict=True)
    )
    print(f"picks {[r[2]['best'] for r in rows]}; warm configurations identical to the first (accuracy, size): {same}")
    print(f"work folder {work}")


def teacher(args, work: Path) -> None:
    """The same grid without and with ``--teacher auto``: both fronts and the wall times."""
    plain, t_plain, _ = _sweep(args, work / "plain", work / "cache-plain", "--json")
    taught, t_taught, _ = _sweep(args, work / "taught", work / "cache-taught", "--json", "--teacher", "auto")
    later, t_later, _ = _sweep(args, work / "plain", work / "cache-plain", "--json", "--teacher", "auto")
    text = _sweep_text(args, work / "taught", work / "cache-taught", "--teacher", "auto")
    print(text)
    t = taught["teacher"]
    print(f"teacher: {t['backbone']} {t['image_size']} ({t['chosen']}, float accuracy {t['accuracy']:.4f})")
    for i, c in enumerate(taught["configs"]):
        lat = " ".join(f"{k} p50 {v['p50_ms']:.2f} ms" for k, v in c["latency"].items())
        how = f"distilled from {c['teacher']}" if c.get("teacher") else "plain"
        print(f"#{i} {c['backbone']} {c['image_size']} {c['precision']:5s} accuracy {c['accuracy']:.4f} {lat} ({how})")
    for target in args.target:
        print(f"{target}: front with the teacher {taught['pareto'][target]}, without {taught['plain_pareto'][target]}")
    print("\n== wall time ==")
    for name, secs, doc in (
        ("no teacher (cold)", t_plain, plain),
        ("--teacher auto (cold)", t_taught, taught),
        ("--teacher auto added to the plain sweep", t_later, later),
    ):
        s = doc["stats"]
        print(
            f"{name:42s} {secs:7.1f} s ({secs / t_plain:4.2f}x)  configs {s['configs']}  computed {s['computed']}  "
            f"trained {s['trained']} (distilled {s.get('distilled', 0)})"
        )
    n = len(plain["configs"])
    same = [a["accuracy"] for a in plain["configs"]] == [a["accuracy"] for a in taught["configs"][:n]]
    print(f"plain configurations identical with and without the teacher (accuracy): {same}; work folder {work}")


def _sweep_text(args, out: Path, cache: Path, *extra: str) -> str:
    """The human-readable output of a finished sweep (every configuration reused)."""
    cmd = [sys.executable, "-m", "edgetransfer", "sweep", "--data", args.data, "--out", str(out), "--epochs", "10"]
    cmd += [x for v in args.backbone for x in ("--backbone", v)]
    cmd += [x for v in args.image_size for x in ("--image-size", str(v))]
    cmd += [x for v in args.precision for x in ("--precision", v)]
    cmd += [x for v in args.target for x in ("--target", v)]
    env = {**os.environ, "EDGETRANSFER_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run([*cmd, *extra], cwd=ROOT, env=env, capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    shared = next(
        (p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared") if p.is_dir()), ROOT.parent / "shared"
    )
    ap.add_argument("--data", default=str(shared / "datasets/hymenoptera"))
    ap.add_argument(
        "--backbone", nargs="+", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    )
    ap.add_argument("--image-size", nargs="+", type=int, default=[160, 224])
    ap.add_argument("--precision", nargs="+", default=["int8", "fp16"])
    ap.add_argument("--target", nargs="+", default=["host-cpu", "pixel4-cpu"])
    ap.add_argument("--max-latency-ms", type=float, default=8.0, help="the pixel4-cpu budget for the pick check")
    ap.add_argument("--work", default=None, help="folder for caches and sweeps (default: a new temporary one)")
    ap.add_argument("--quick", action="store_true", help="cold, warm, second --out with one more precision")
    ap.add_argument("--executor", default="local", choices=("local", "processes", "ray"))
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--extra-precision", default="fp16")
    ap.add_argument("--base-tree", default=None, help="--quick: time the cold sweep of this checkout first")
    ap.add_argument("--teacher", action="store_true", help="the grid without and with --teacher auto")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="et-sweep-bench-"))
    if args.quick:
        quick(args, work)
        return
    if args.teacher:
        teacher(args, work)
        return
    cache = work / "cache"
    cold, t_cold, _ = _sweep(args, work / "cold", cache, "--json")
    feats, t_feats, _ = _sweep(args, work / "warm-features", cache, "--json", memo=False)
    warm, t_warm, _ = _sweep(args, work / "warm", cache, "--json")
    again, t_again, _ = _sweep(args, work / "warm", cache, "--json")
    tight, _, _ = _sweep(args, work / "warm", cache, "--json", "--max-latency-ms", str(args.max_latency_ms))
    # The human-readable table and fronts of the tight run (every configuration reused: seconds).
    cmd_text = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetransfer",
            "sweep",
            "--data",
            args.data,
            "--out",
            str(work / "warm"),
            "--epochs",
            "10",
        ]
        + [x for v in args.backbone for x in ("--backbone", v)]
        + [x for v in args.image_size for x in ("--image-size", str(v))]
        + [x for v in args.precision for x in ("--precision", v)]
        + [x for v in args.target for x in ("--target", v)]
        + ["--max-latency-ms", str(args.max_latency_ms)],
        cwd=ROOT,
        env={**os.environ, "EDGETRANSFER_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
    )
    print("== profile budgets (no override): picks", cold["best"], "==")
    print(f"\n== --max-latency-ms {args.max_latency_ms} (exit {cmd_text.returncode}) ==")
    print(cmd_text.stdout)
    for t in args.target:
        print(_check_pick(tight, t, args.max_latency_ms))
    print("\n== wall time of the whole sweep ==")
    runs = (
        ("cold caches", t_cold, cold),
        ("warm features, memo off", t_feats, feats),
        ("warm features + memo", t_warm, warm),
        ("resume", t_again, again),
    )
    for name, secs, doc in runs:
        s = doc["stats"]
        print(
            f"{name:24s} {secs:7.1f} s ({t_cold / secs:4.1f}x)  computed {s['computed']:2d}  reused {s['reused']:2d}  "
            f"trained {s['trained']}  features hit {s['feature_hits']} / miss {s['feature_misses']}  "
            f"memo hit {s.get('memo_hits', 0)} / miss {s.get('memo_misses', 0)}"
        )
    same = all(
        (a["accuracy"], a["size_bytes"]) == (b["accuracy"], b["size_bytes"])
        for a, b in zip(cold["configs"], warm["configs"], strict=True)
    )
    print(f"warm configurations identical to cold (accuracy, file size): {same}; work folder {work}")


if __name__ == "__main__":
    main()
