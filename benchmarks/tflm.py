"""EfficientNet-Lite0 int8 at 96 px on microcontrollers: TFLM arena, flash, accuracy, fit per profile.

    python benchmarks/tflm.py [--run RUN_DIR] [--data DIR] [--out DIR]

Without --run it trains Lite0 (features workflow) at 96 px on hymenoptera first. Exports full
int8 TFLite, measures the TFLM tensor arena with the real TFLM interpreter, writes the TFLM
bundle (model_data.cc/.h), runs the val split through TFLM and through LiteRT (int8, same file),
and prints arena / flash / accuracy / agreement and, per ``runtime: tflm`` profile, whether it
fits and the ESTIMATED latency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = ["stm32h7", "esp32-s3"]
# ../shared beside the checkout (a worktree may sit one level deeper).
DATA = next(
    (
        d / "shared/datasets/hymenoptera"
        for d in Path(__file__).resolve().parents
        if (d / "shared/datasets/hymenoptera").is_dir()
    ),
    Path("shared/datasets/hymenoptera"),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--run", help="a finished run directory (skips training)")
    ap.add_argument("--out", help="folder for the run and exports (default: a temporary one)")
    args = ap.parse_args()
    from edgetransfer import targets
    from edgetransfer.evaluation.heldout import held_out
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.formats import tflm as tflm_format
    from edgetransfer.exporter.quantization import QuantRecipe
    from edgetransfer.runtime import tflm
    from edgetransfer.runtime.litert import LiteRT
    from edgetransfer.training import TrainConfig, TrainedModel, train

    out = Path(args.out or tempfile.mkdtemp(prefix="et-tflm-"))
    t0 = time.perf_counter()
    run = (
        TrainedModel.from_dir(args.run)
        if args.run
        else train(
            args.data, TrainConfig(backbone="efficientnet_lite0", image_size=96, workflow="features"), out=out / "run"
        )
    )
    art = export(run, ["tflite"], [QuantRecipe.int8()], out=out / "export")[0]
    print(f"trained + exported in {time.perf_counter() - t0:.0f} s: {art.path.name} ({art.size_bytes} bytes)")

    t = time.perf_counter()
    bundle = tflm_format.export_tflm(art.path, out / "tflm")
    print(f"TFLM bundle in {time.perf_counter() - t:.1f} s (arena by binary search): {bundle.cc.parent}")
    print(f"ops ({len(bundle.ops)}): {', '.join(bundle.ops)}")

    ho = held_out(run, args.data)
    x, y = ho.x, ho.y
    t = time.perf_counter()
    p_tflm = tflm.TFLMSession.load(bundle.tflite, bundle.arena_bytes).run(x)
    s_tflm = time.perf_counter() - t
    lite = LiteRT().load(art.path, threads=1)
    p_lite = np.concatenate([lite.run(x[i : i + 1]) for i in range(len(x))])
    ref = _litert_reference(art.path)
    p_ref = np.concatenate([ref.run(x[i : i + 1]) for i in range(len(x))])
    step = 1.0 / 256  # the uint8 output's quantization step
    print(f"\nval images {len(x)} ({run.manifest['backbone']} {run.input_size} px, classes {run.classes})")
    print(f"arena  {bundle.arena_bytes:>10,d} bytes ({bundle.arena_bytes / 1024:.1f} KiB)")
    print(f"flash  {bundle.flash_bytes:>10,d} bytes ({bundle.flash_bytes / 1024:.1f} KiB, the .tflite)")
    print(
        f"accuracy TFLM {(p_tflm.argmax(1) == y).mean():.4f}  LiteRT int8 {(p_lite.argmax(1) == y).mean():.4f}  "
        f"top-1 agreement {(p_tflm.argmax(1) == p_lite.argmax(1)).mean():.4f}  "
        f"max |dprob| {np.abs(p_tflm - p_lite).max():.5f} ({np.abs(p_tflm - p_lite).max() / step:.1f} steps)"
    )
    print(
        f"TFLM vs LiteRT reference kernels (BUILTIN_REF): max |dprob| {np.abs(p_tflm - p_ref).max():.5f}, "
        f"top-1 agreement {(p_tflm.argmax(1) == p_ref.argmax(1)).mean():.4f}"
    )
    print(f"TFLM host (reference kernels) {1e3 * s_tflm / len(x):.0f} ms/image")
    print(
        f"\n{'target':10s} {'arena in':9s} {'RAM ok':>6s} {'flash ok':>8s} {'fits':>5s} {'est. ms':>8s}  {'MACs':>12s}"
    )
    for name in TARGETS:
        prof = targets.get(name)
        f = tflm.fits(bundle.arena_bytes, bundle.flash_bytes, prof)
        est = tflm.estimate_latency(bundle.tflite, prof)
        cells = [f"{f['arena_in']!s:9s}", f"{f['ram_ok']!s:>6s}", f"{f['flash_ok']!s:>8s}", f"{f['fits']!s:>5s}"]
        print(
            f"{name:10s} {' '.join(cells)} {est.p50:8.1f}  {est.detail['macs']:>12,d}  ({est.provenance}; "
            f"RAM budget {f['ram_budget_bytes'] // 1024} KiB, flash budget {f['flash_budget_bytes'] // 1024} KiB)"
        )


def _litert_reference(path: Path):
    """LiteRT with its reference kernels (no XNNPACK): the kernels TFLM's are ported from."""
    from ai_edge_litert import interpreter as li

    from edgetransfer.runtime.litert import _Session

    interp = li.Interpreter(model_path=str(path), experimental_op_resolver_type=li.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    return _Session(interp)


if __name__ == "__main__":
    main()
