"""The int8 ONNX file for CPUs with and without VNNI (issue #39, item 6): accuracy here, AVX2 pairs simulated.

    python benchmarks/isa_saturation.py RUN_DIR [--out DIR] [--images 8]

Exports RUN_DIR's model to int8 ONNX twice, as ``export`` does for a target with VNNI (8-bit weights) and for
one without (``isa: [avx2]``: uint8 weights, U8U8, :data:`edgetransfer.isa.SAFE_OPTIONS`),
then for each file prints: its accuracy and drop
on the run's held-out images measured on THIS machine (ONNX Runtime's int8 kernels; the CPU flags are printed),
and the share of u8 x s8 product pairs that leave int16 on AVX2 (SIMULATED by
:mod:`edgetransfer.exporter.quantization.saturation`: no AVX2-only machine ran them). A file whose pairs never
saturate computes on AVX2 exactly the integers it computes here, so its AVX2 accuracy is the one measured here;
a file whose pairs saturate is predicted to differ, by an amount this script does not compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np

from edgetransfer import isa, metrics, targets
from edgetransfer.evaluation.heldout import held_out, predict
from edgetransfer.exporter.artifacts import export
from edgetransfer.exporter.quantization import QuantRecipe
from edgetransfer.exporter.quantization.saturation import simulate
from edgetransfer.runtime import load_session
from edgetransfer.runtime.base import to_nchw
from edgetransfer.training import TrainedModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("isa-saturation-out"))
    ap.add_argument("--images", type=int, default=8, help="held-out images the simulator reads activations of")
    args = ap.parse_args()
    run = TrainedModel.from_dir(args.run_dir)
    ho = held_out(run)
    ref = run.load_model().predict(ho.x, verbose=0)
    ref_acc = metrics.scores(ref, ho.y, len(run.classes)).accuracy
    avx2 = dataclasses.replace(targets.get("host-cpu"), name="avx2-cpu", isa=("avx2", "fma"))
    vnni = dataclasses.replace(targets.get("host-cpu"), name="vnni-cpu", isa=("avx2", "avx512_vnni"))
    here = isa.detect()
    print(f"this host: {isa.describe(here)}; load average {os.getloadavg()[0]:.2f}; float accuracy {ref_acc:.4f}")
    print(f"{'file':40s} {'made for':9s} {'acc here':>8s} {'drop':>6s} {'AVX2 pairs saturated (sim.)':>28s}")
    for tgt in (vnni, avx2):
        (art,) = export(run, ["onnx"], [QuantRecipe.int8()], out=args.out / tgt.name, targets=[tgt])
        probs = predict(load_session(art.path), ho.x, str(art.path))
        acc = metrics.scores(probs, ho.y, len(run.classes)).accuracy
        spec = load_session(art.path).input_spec
        batches = [to_nchw(ho.x[i : i + 1], spec).astype(np.float32) for i in range(min(args.images, len(ho.x)))]
        sat = simulate(art.path, batches)
        print(
            f"{art.path.parent.name + '/' + art.path.name:40s} {tgt.name:9s} {acc:8.4f} {100 * (ref_acc - acc):6.2f} "
            f"{100 * sat.saturated / max(1, sat.pairs):9.4f}% of {sat.pairs:,}"
        )
        print(sat.render(4))
        verdict = "differs from" if sat.saturates else "equals (no pair saturates)"
        print(f"  AVX2 accuracy (simulated): {verdict} the {acc:.4f} measured here\n")


if __name__ == "__main__":
    main()
