"""Export every registered backbone to every format x precision and run each file once.

    python benchmarks/export_matrix.py [--size 32] [--backbones a,b] [--run RUN_DIR]

Part 1 (always): each backbone, weights none, a 2-class head, at a small input; prints
one row per (backbone, format, precision): ok / refused / FAILED, size and seconds.
Part 2 (with --run): accuracy of every artifact of a trained run on its val split
against the Keras model, and sizes relative to fp32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the matrix helper lives with its test

import export_matrix_lib as matrix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--backbones", default="")
    ap.add_argument("--run", help="a trained run directory for the accuracy table")
    args = ap.parse_args()
    from edgetransfer import backbones

    names = [n for n in args.backbones.split(",") if n] or backbones.names()
    work = Path(tempfile.mkdtemp(prefix="et-matrix-"))
    print(f"{'backbone':20s} {'format':7s} {'precision':9s} {'result':8s} {'size_kB':>8s} {'sec':>6s}")
    for name in names:
        start = time.perf_counter()
        for row in matrix.export_backbone(name, work / name, size=args.size):
            print(
                f"{name:20s} {row.format:7s} {row.precision:9s} {row.result:8s} {row.size_bytes / 1e3:8.0f} "
                f"{row.seconds:6.1f}  {row.note}",
                flush=True,
            )
        print(f"# {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if args.run:
        matrix.print_accuracy_table(args.run)


if __name__ == "__main__":
    main()
