"""LiteRT, ONNX Runtime and OpenVINO on EfficientNet-Lite0 at 224 px, fp32 and int8, 1 and 2 threads.

    python benchmarks/runtimes.py [--run RUN_DIR] [--data DIR] [--budget-s 3] [--threads 1,2]

Without --run it trains a features run of Lite0 at 224 px on hymenoptera first; the run's
TFLite and ONNX fp32/int8 files are exported unless already there. Prints p50/p90 per
runtime x file x threads and the share of this machine's peak, where the peak is measured
here through the runtimes themselves: one big fp32 MatMul and one uint8 x int8 MatMulInteger
ONNX graph (GMAC/s = M*N*K / fastest run), the best runtime per precision and thread count.
Numbers on a shared machine are noisy: the load average is printed before and after.
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
# M = N = K of the peak GEMMs. Large enough for MLAS/oneDNN to reach full speed (operands of 2.4 and
# 4 MB, past L2), small enough that one run (5-20 ms here) fits in a scheduler time slice: on a shared
# machine a 2048^3 run (~0.2 s) is always interrupted and measured only about half the peak.
GEMM_SIZES = (768, 1024)


def gemm_models(folder: Path, n: int) -> dict[str, Path]:
    """``{"fp32": MatMul, "int8": MatMulInteger(uint8, int8)}`` ONNX files, B a constant like a weight."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graphs = {
        "fp32": (
            TensorProto.FLOAT,
            "MatMul",
            TensorProto.FLOAT,
            [numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "B")],
            ["A", "B"],
        ),
        "int8": (
            TensorProto.UINT8,
            "MatMulInteger",
            TensorProto.INT32,
            [
                numpy_helper.from_array(rng.integers(-127, 127, (n, n)).astype(np.int8), "B"),
                numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
                numpy_helper.from_array(np.array(0, np.int8), "b_zp"),
            ],
            ["A", "B", "a_zp", "b_zp"],
        ),
    }
    out = {}
    for prec, (in_type, op, out_type, inits, inputs) in graphs.items():
        graph = helper.make_graph(
            [helper.make_node(op, inputs, ["Y"])],
            f"gemm_{prec}",
            [helper.make_tensor_value_info("A", in_type, [n, n])],
            [helper.make_tensor_value_info("Y", out_type, [n, n])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        out[prec] = folder / f"gemm_{prec}_{n}.onnx"
        onnx.save(model, out[prec])
    return out


def _time_raw(run, x, budget_s: float) -> float:
    """Fastest seconds of ``run(x)`` after a warm-up, at least 5 runs: a peak is a best case, and on a
    shared machine the fastest run is the one least disturbed by other jobs."""
    import time

    run(x)
    samples, end = [], time.perf_counter() + budget_s
    while len(samples) < 5 or time.perf_counter() < end:
        t = time.perf_counter()
        run(x)
        samples.append(time.perf_counter() - t)
    return float(np.min(samples))


def gemm_peak(path: Path, runtime: str, threads: int, budget_s: float, n: int) -> float:
    """GMAC/s of the GEMM graph in ``runtime`` (raw sessions: the Session wrappers expect images)."""
    x = (
        np.random.default_rng(1).integers(0, 255, (n, n)).astype(np.uint8)
        if "int8" in path.name
        else np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    )
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        run = lambda a: sess.run(None, {"A": a})
    else:
        import openvino as ov

        from edgetransfer.runtime.openvino import PRECISION

        core = ov.Core()
        req = core.compile_model(
            str(path),
            "CPU",
            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": PRECISION},
        ).create_infer_request()
        run = lambda a: req.infer({0: a})
    return n**3 / _time_raw(run, x, budget_s) / 1e9


def measure_peaks(gemms: dict[int, dict[str, Path]], threads: list[int], budget_s: float) -> dict:
    """{(precision, threads, runtime): GMAC/s}, the best over the GEMM sizes."""
    peak: dict = {}
    for n, models in gemms.items():
        for prec, path in models.items():
            for t in threads:
                for rt in ("onnxruntime", "openvino"):
                    try:
                        g = gemm_peak(path, rt, t, budget_s, n)
                    except Exception as exc:  # a runtime without a kernel for the op: leave it out
                        print(f"GEMM {prec} {n} in {rt} failed: {exc}", file=sys.stderr)
                        continue
                    peak[prec, t, rt] = max(g, peak.get((prec, t, rt), 0.0))
    return peak


def artifacts(args) -> dict[tuple[str, str], Path]:
    """{(format, precision): path} of the run's fp32/int8 TFLite and ONNX files (exported if missing)."""
    from edgetransfer.exporter import ExportedArtifact, export
    from edgetransfer.quantization import QuantRecipe
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


def measure_rows(files: dict, threads: list[int], macs: int, budget_s: float) -> list[tuple]:
    """(file, runtime, threads, p50, p90, runs, GMAC/s) for every installed runtime of every file."""
    from edgetransfer import latency
    from edgetransfer.runtime import available_runtimes

    batch = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    rows = []
    for (fmt, prec), path in files.items():
        for rt in available_runtimes(path):
            for t in threads:
                lat = latency.measure(
                    lambda rt=rt, t=t, path=path: rt.load(path, t), batch, budget_s=budget_s, threads=t
                )
                rows.append(((fmt, prec), rt.name, t, lat.p50, lat.p90, lat.runs, macs / (lat.p50 / 1e3) / 1e9))
                if prec == "fp32" and t == threads[-1]:
                    print(f"{rt.name} settings: {getattr(rt.load(path, t), 'settings', {})}")
    return rows


def report(files: dict, rows: list[tuple], before: dict, after: dict, macs: int, load0: float) -> None:
    from edgetransfer import latency

    print(f"host: {latency.host_info()['cpu']}, {os.cpu_count()} cores; load average before {load0:.2f}")
    print(f"Lite0 {SIZE} px: {macs / 1e6:.0f}M MACs (edgetransfer.backbones.profile)")
    print(f"\nGEMM peak, best of sizes {GEMM_SIZES} (GMAC/s), measured before and after the models:")
    for key, g in before.items():
        print(f"  {key[0]:5s} {key[1]} thr  {key[2]:12s} {g:8.1f} {after.get(key, 0):8.1f}")
    best = {k[:2]: max(max(before.get(j, 0), after.get(j, 0)) for j in before if j[:2] == k[:2]) for k in before}
    print(
        f"\n{'file':28s} {'runtime':12s} {'thr':>3s} {'p50 ms':>8s} {'p90 ms':>8s} {'runs':>5s} "
        f"{'GMAC/s':>7s} {'peak':>7s} {'% peak':>6s}"
    )
    for key, rt, t, p50, p90, runs, g in rows:
        pk = best[key[1], t]
        print(
            f"{files[key].name:28s} {rt:12s} {t:3d} {p50:8.2f} {p90:8.2f} {runs:5d} {g:7.1f} {pk:7.1f} "
            f"{100 * g / pk:5.1f}%"
        )
    print(f"\nload average after {os.getloadavg()[0]:.2f} (machine shared with other jobs: figures are noisy)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/hymenoptera"))
    ap.add_argument("--run", help="a finished Lite0 224 px run directory (skips training)")
    ap.add_argument("--budget-s", type=float, default=3.0, help="seconds of timed runs per row")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    from edgetransfer import backbones

    threads = [int(t) for t in args.threads.split(",")]
    load0 = os.getloadavg()[0]
    files = artifacts(args)
    # MACs of the backbone at 224 px as published (with its 1000-class head, ~1.3M MACs more than ours).
    macs = backbones.profile(BACKBONE).macs
    with tempfile.TemporaryDirectory() as tmp:
        gemms = {n: gemm_models(Path(tmp), n) for n in GEMM_SIZES}
        before = measure_peaks(gemms, threads, args.budget_s / 2)
        rows = measure_rows(files, threads, macs, args.budget_s)
        after = measure_peaks(gemms, threads, args.budget_s / 2)
    report(files, rows, before, after, macs, load0)


if __name__ == "__main__":
    main()
