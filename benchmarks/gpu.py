"""The GPU paths, measured where a GPU is lent (issue 30): run unchanged on any machine.

    python benchmarks/gpu.py [--data ../shared/datasets/hymenoptera] [--epochs 5] [--work DIR]

On a machine without a GPU visible to TensorFlow it prints why and exits 0 having measured
nothing (no CPU figure is passed off as a GPU one). Where one is visible it measures, each in a
fresh process with its own cache:

1. training images/s (the run manifest's ``images_per_second``) for the ``features`` and the
   ``fine-tune`` workflow, each with and without ``--mixed-precision``;
2. TFLite (fp32, int8) and ONNX (fp32) export time of the fine-tuned run;
3. a 4-configuration sweep with ``--executor ray`` on a local Ray cluster whose tasks declare the
   GPU (``num_gpus=1`` when the cluster has one), against ``--executor local``.

It prints one table; record it in the issue's note with the GPU's name (printed first).
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


def _gpus() -> list[str]:
    """The GPUs TensorFlow sees, by name (a child process: this one stays TensorFlow-free)."""
    code = "import tensorflow as tf; print('\\n'.join(d.name for d in tf.config.list_physical_devices('GPU')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(None))
    return [x for x in res.stdout.splitlines() if x.strip()]


def _env(cache: Path | None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    if cache is not None:
        env["EDGETRANSFER_CACHE"] = str(cache)
    return env


def _cli(cache: Path, *args: str) -> float:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "edgetransfer", *args], cwd=ROOT, env=_env(cache), text=True,
                         capture_output=True)  # fmt: skip
    if res.returncode not in (0, 1):
        sys.exit(f"edgetransfer {' '.join(args[:1])} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "hymenoptera"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    gpus = _gpus()
    if not gpus:
        print("benchmarks/gpu.py: no GPU visible to TensorFlow here: nothing measured (run it where one is lent)")
        return
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip()  # fmt: skip
    except OSError:
        name = ""
    print(f"GPUs: {gpus} {name}")
    work = Path(args.work or tempfile.mkdtemp(prefix="et-gpu-bench-"))
    rows = []
    for wf in ("features", "fine-tune"):
        for mp in (False, True):
            out = work / f"run-{wf}-{'mp' if mp else 'fp32'}"
            cmd = ["train", "--data", args.data, "--workflow", wf, "--epochs", str(args.epochs), "--out", str(out)]
            secs = _cli(work / f"cache-{wf}-{mp}", *cmd, *(["--mixed-precision"] if mp else []))
            m = json.loads((out / "manifest.json").read_text())
            rows.append((f"train {wf}{' --mixed-precision' if mp else ''}", secs, m.get("images_per_second")))
    run = work / "run-fine-tune-fp32"
    for fmt, prec in (("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32")):
        out = work / f"export-{fmt}-{prec}"
        secs = _cli(work / "cache-export", "export", str(run), "--format", fmt, "--precision", prec, "--out", str(out))
        rows.append((f"export {fmt} {prec}", secs, None))
    sweep = ["sweep", "--data", args.data, "--backbone", "efficientnet_lite0", "--backbone", "efficientnet_lite1"]
    sweep += ["--image-size", "160", "--image-size", "224", "--precision", "int8", "--target", "pixel4-cpu", "--json"]
    for ex in ("local", "ray"):
        secs = _cli(work / f"cache-sweep-{ex}", *sweep, "--out", str(work / f"sweep-{ex}"), "--executor", ex)
        rows.append((f"sweep 4 configs --executor {ex}", secs, None))
    print(f"{'step':40s} {'wall s':>8s} {'images/s':>9s}")
    for step, secs, ips in rows:
        print(f"{step:40s} {secs:8.1f} {ips if ips is not None else '':>9}")
    print(f"work folder {work}")


if __name__ == "__main__":
    main()
