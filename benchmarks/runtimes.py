"""LiteRT, ONNX Runtime and OpenVINO on EfficientNet-Lite0 at 224 px, fp32 and int8, 1 and 2 threads,
before and after tuning, against this machine's measured peak, and where the int8 time goes.

    python benchmarks/runtimes.py [--run RUN_DIR] [--data DIR] [--budget-s 120] [--threads 1,2]

Without --run it trains a features run of Lite0 at 224 px on hymenoptera first; the run's TFLite
and ONNX fp32/int8 files are exported unless already there. Then, in one process:

1. the peak: ONNX Runtime's fp32 ``MatMul`` and uint8 x int8 ``MatMulInteger`` GEMMs per thread
   count (``edgetransfer.runtime.peak.measure_peak``), before and after the models, best kept;
   MLAS runs the int8 GEMM on AMX where the CPU has it, so the int8 peak is AMX's. The VNNI
   bound is derived: 4 x the fp32 peak (VPDPBUSD does 4 uint8 x int8 MACs per fp32 FMA lane).
2. every (file, runtime, threads, setting) of ``edgetransfer.runtime.tune.CANDIDATES`` and the
   defaults loaded at once and timed interleaved (``tune.interleave``: a few runs of each in a
   fresh random order per round, for ``--budget-s``), so load on a shared machine hits all alike;
   "before" is the default setting (what ``load`` uses), "after" the best setting at that thread count.
3. per-op profiles of the ONNX files (ONNX Runtime and OpenVINO, 1 and 2 threads, default settings):
   time by op kind, and how each kind scales from 1 to 2 threads.
4. OpenVINO bf16 against f32 on the fp32 ONNX file (``tune.bf16_check``).
Figures on a shared machine are noisy: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BACKBONE, SIZE = "efficientnet_lite0", 224
RUNTIMES = {"tflite": ("litert",), "onnx": ("onnxruntime", "openvino")}


def peaks(threads: list[int]) -> dict[int, dict[str, float]]:
    from edgetransfer.runtime.peak import measure_peak

    return {t: measure_peak(t, budget_s=1.0) for t in threads}


def artifacts(args) -> dict[tuple[str, str], Path]:
    """{(format, precision): path} of the run's fp32/int8 TFLite and ONNX files (exported if missing)."""
    from edgetransfer.exporter.artifacts import ExportedArtifact, export
    from edgetransfer.exporter.quantization import QuantRecipe
    from edgetransfer.training import TrainConfig, TrainedModel, train

    if args.run:
        run = TrainedModel.from_dir(args.run)
    else:
        cfg = TrainConfig(backbone=BACKBONE, image_size=SIZE, workflow="features")
        run = train(args.data, cfg, out=Path(tempfile.mkdtemp()) / "run")
    found = {}
    for m in sorted((run.run_dir / "export").glob("*.manifest.json")):
        a = ExportedArtifact.from_manifest(m)
        found[a.format, a.precision] = Path(a.path)
    want = [(f, p) for f in ("tflite", "onnx") for p in ("fp32", "int8")]
    if not all(k in found for k in want):
        arts = export(run, ["tflite", "onnx"], [QuantRecipe.fp32(), QuantRecipe.int8()])
        found = {(a.format, a.precision): Path(a.path) for a in arts}
    return {k: found[k] for k in want}


def measure_all(files: dict, threads: list[int], budget_s: float) -> list[tuple]:
    """[(format, precision, runtime, threads, settings, p50 ms, runs)], all timed interleaved."""
    from edgetransfer.runtime import tune

    runs, meta = {}, {}
    for (fmt, prec), path in files.items():
        for rt in RUNTIMES[fmt]:
            cands = tune.CANDIDATES[rt] + [tune.DEFAULTS[rt]]
            for t in threads:
                for c in cands:
                    key = f"{fmt}|{prec}|{rt}|{t}|{sorted(c.items(), key=str)}"
                    if key in runs:
                        continue
                    try:
                        runs[key] = tune.runner(path, rt, {**c, "threads": t})
                    except Exception as exc:  # a setting the runtime refuses: say so, leave it out
                        print(f"skip {fmt} {prec} {rt} {t} {c}: {exc}", file=sys.stderr)
                        continue
                    meta[key] = (fmt, prec, rt, t, c)
    print(f"{len(runs)} (file, runtime, threads, setting) sessions loaded; timing interleaved for {budget_s:.0f} s")
    samples, rounds = tune.interleave(runs, budget_s, per_turn=2)
    print(f"{rounds} rounds")
    return [(*meta[k], float(np.median(v)), len(v)) for k, v in samples.items()]


def tables(results: list[tuple], pk: dict, macs: int, threads: list[int]) -> list[tuple]:
    """Rows (file, runtime, threads, before ms, after ms, winning setting) and the printed table."""
    from edgetransfer.runtime import tune

    print(
        f"\n{'file':10s} {'runtime':12s} {'thr':>3s} {'before':>8s} {'after':>8s} {'gain':>5s} "
        f"{'%peak b/a':>11s} {'%VNNI b/a':>11s}  winning setting"
    )
    rows = []
    for fmt, prec in sorted({(r[0], r[1]) for r in results}):
        for rt in RUNTIMES[fmt]:
            for t in threads:
                mine = [r for r in results if r[:4] == (fmt, prec, rt, t)]
                if not mine:
                    continue
                before = next((r[5] for r in mine if r[4] == tune.DEFAULTS[rt]), float("nan"))
                best = min(mine, key=lambda r: r[5])
                after = best[5]
                peak = pk[t]["int8" if prec == "int8" else "fp32"]
                vnni = 4 * pk[t]["fp32"] if prec == "int8" else pk[t]["fp32"]
                rate = lambda ms: macs / (ms / 1e3) / 1e9
                print(
                    f"{fmt + ' ' + prec:10s} {rt:12s} {t:3d} {before:8.2f} {after:8.2f} {before / after:5.2f} "
                    f"{100 * rate(before) / peak:5.1f}/{100 * rate(after) / peak:5.1f} "
                    f"{100 * rate(before) / vnni:5.1f}/{100 * rate(after) / vnni:5.1f}  {best[4]}"
                )
                rows.append((fmt, prec, rt, t, before, after, best[4]))
    return rows


def where_int8_goes(files: dict, threads: list[int]) -> None:
    """Per-op profiles of the ONNX files: ms by op kind per runtime and thread count, and the 2/1 ratio."""
    from edgetransfer.runtime.profile import profile

    for prec in ("int8", "fp32"):
        path = files.get(("onnx", prec))
        if path is None:
            continue
        for rt in ("onnxruntime", "openvino"):
            profs = {t: profile(path, rt, t, runs=30) for t in threads}
            kinds = sorted(
                {k for p in profs.values() for k in p.by_kind()}, key=lambda k: -profs[threads[0]].by_kind().get(k, 0)
            )
            print(f"\n{prec} ONNX on {rt}, ms by op kind (sum of op times; wall in brackets):")
            print("  " + " ".join(f"{f'{t} thr':>16s}" for t in threads) + "   2/1 thr  MAC %")
            p0 = profs[threads[0]]
            kind_macs = {k: sum(o.macs for o in p0.ops if (o.kind or "?") == k) for k in kinds}
            for k in kinds:
                ms = [profs[t].by_kind().get(k, 0.0) for t in threads]
                ratio = ms[-1] / ms[0] if ms[0] else float("nan")
                print(
                    f"  {k:12s}"
                    + " ".join(f"{m:8.2f} ({100 * m / profs[t].total_ms:4.1f}%)" for m, t in zip(ms, threads))
                    + f"   {ratio:5.2f}  {100 * kind_macs[k] / max(1, p0.macs()):5.1f}"
                )
            tot = [profs[t].total_ms for t in threads]
            print(
                f"  {'total':12s}"
                + " ".join(f"{m:8.2f} [{profs[t].wall_ms:6.2f}]" for m, t in zip(tot, threads))
                + f"   {tot[-1] / tot[0]:5.2f}"
            )
            if prec == "int8":
                print(profs[threads[-1]].render(top=8))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera"))
    ap.add_argument("--run", help="a finished Lite0 224 px run directory (skips training)")
    ap.add_argument("--budget-s", type=float, default=120.0, help="seconds of interleaved timed runs, all rows")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    from edgetransfer import backbones
    from edgetransfer.runtime import latency, tune

    threads = [int(t) for t in args.threads.split(",")]
    load0 = os.getloadavg()[0]
    files = artifacts(args)
    # MACs of the backbone at 224 px as published (with its 1000-class head, ~1.3M MACs more than ours).
    macs = backbones.profile(BACKBONE).macs
    before = peaks(threads)
    results = measure_all(files, threads, args.budget_s)
    after = peaks(threads)
    pk = {t: {p: max(before[t][p], after[t][p]) for p in before[t]} for t in threads}
    print(f"\nhost: {latency.host_info()['cpu']}, {os.cpu_count()} cores; load average before {load0:.2f}")
    print(f"Lite0 {SIZE} px: {macs / 1e6:.0f}M MACs (edgetransfer.backbones.profile)")
    print("GEMM peak (GMAC/s, ONNX Runtime MLAS), before / after the models; VNNI bound = 4 x fp32:")
    for t in threads:
        print(
            f"  {t} thr: fp32 {before[t]['fp32']:7.1f} / {after[t]['fp32']:7.1f}   int8 {before[t]['int8']:7.1f} / "
            f"{after[t]['int8']:7.1f}   VNNI bound {4 * pk[t]['fp32']:7.1f}"
        )
    tables(results, pk, macs, threads)
    where_int8_goes(files, threads)
    print(f"\nbf16 support: {tune.bf16_support()}")
    if ("onnx", "fp32") in files:
        for t in threads:
            b = tune.bf16_check(files["onnx", "fp32"], t, budget_s=10)
            print(
                f"  OpenVINO {t} thr: f32 {b.f32_p50_ms:.2f} ms, bf16 {b.bf16_p50_ms:.2f} ms ({b.speedup:.2f}x; "
                f"compiled as {b.precision_read_back}); max |diff| {b.max_abs_diff:.4f}, "
                f"top-1 agreement {b.top1_agreement:.0%} over {b.inputs} random inputs"
            )
    print(f"\nload average after {os.getloadavg()[0]:.2f} (machine shared with other jobs: figures are noisy)")


if __name__ == "__main__":
    main()
