"""``python -m edgetransfer.runtime bench MODEL [--threads N] [--profile] [--json]``: measure on this machine.

``python -m edgetransfer.runtime predict MODEL --inputs IN.npz --outputs OUT.npz``: run MODEL on
every row of ``IN.npz`` (key ``x``, the model's input tensor) and write its outputs (key ``y``,
one row per image): the device side of a runner's accuracy run (:mod:`.device_io`).

Needs only the ``runtime`` extra, so it runs on a Raspberry Pi, a phone with Python, or a
CI runner; ``edgetransfer validate`` calls it over a target's ``runner`` command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..errors import EdgeTransferError
from . import isolate, load_session, runtime_for
from .latency import measure
from .profile import profile


def bench(model: str, threads: int | None, budget_s: float, warmup: int, min_runs: int, provider: str):
    isolate.probe(model)  # a crashing file must give exit 3 naming it, not kill this process
    rt = runtime_for(model, provider)
    session = rt.load(model, threads)
    spec = session.input_spec
    shape = (1, spec.size, spec.size, 3)
    batch = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    return measure(
        lambda: load_session(model, threads, provider),
        batch,
        warmup=warmup,
        budget_s=budget_s,
        min_runs=min_runs,
        threads=threads,
        runtime_version=rt.version(),
    )


def _count(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high if high is not None else ''}")
        return value

    parse.__name__ = "integer"
    return parse


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgetransfer.runtime")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="latency of MODEL on this machine")
    b.add_argument("model")
    # --threads 0 would reach the runtime and read as the model's fault: refused here (exit 2)
    b.add_argument("--threads", type=_count(1, 1024), default=None)
    b.add_argument("--budget-s", type=_seconds, default=2.0, help="seconds of timed runs")
    b.add_argument("--warmup", type=_count(0), default=5)
    b.add_argument("--min-runs", type=_count(1), default=20)
    b.add_argument("--provider", default="cpu", help="ONNX Runtime provider short name")
    b.add_argument("--json", action="store_true", help="one JSON document on stdout")
    b.add_argument(
        "--profile", action="store_true", help="per-op times too (ONNX Runtime, OpenVINO; LiteRT says why not)"
    )
    b.add_argument("--profile-runs", type=int, default=20, help="profiled runs (after the timed ones)")
    b.add_argument("--top", type=int, default=15, help="ops in the --profile table")
    p = sub.add_parser("predict", help="outputs of MODEL on the input tensors of an .npz (a device's accuracy run)")
    p.add_argument("model")
    p.add_argument("--inputs", required=True, help=".npz with key x: the model's input tensor, one row per image")
    p.add_argument("--outputs", required=True, help=".npz to write, key y: the model's outputs, one row per image")
    p.add_argument("--threads", type=_count(1, 1024), default=None)
    p.add_argument("--provider", default="cpu", help="ONNX Runtime provider short name")
    args = ap.parse_args(argv)
    if args.cmd == "predict":
        return _predict(args)
    prof = None
    try:
        lat = bench(args.model, args.threads, args.budget_s, args.warmup, args.min_runs, args.provider)
        if args.profile:
            # after the timed runs, in its own session: a profiled run is slower than a plain one
            prof = profile(args.model, runtime_for(args.model, args.provider).name, args.threads, args.profile_runs)
    except EdgeTransferError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        # sha256 names the exact file measured, so `check --latency-samples` can refuse samples of another one.
        digest = hashlib.sha256(Path(args.model).read_bytes()).hexdigest()
        doc = {"model": args.model, "sha256": digest, **lat.to_json(samples=True)}
        if prof is not None:
            doc["profile"] = prof.to_json()
        print(json.dumps(doc))
    else:
        print(
            f"{args.model}: p50 {lat.p50:.2f} ms  p90 {lat.p90:.2f}  p99 {lat.p99:.2f}  ({lat.runs} runs, "
            f"load {lat.load_ms:.0f} ms, {lat.host['cpu']}, {lat.host['runtime']})"
        )
        if prof is not None:
            print(prof.render(args.top))
    return 0


def _predict(args) -> int:
    from .device_io import predict

    try:
        done = predict(args.model, args.inputs, args.outputs, args.threads, args.provider)
    except EdgeTransferError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    digest = hashlib.sha256(Path(args.model).read_bytes()).hexdigest()
    print(json.dumps({"model": args.model, "sha256": digest, **done}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
