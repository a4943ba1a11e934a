"""Byte-mutants of exported models: no signal escapes, every failure is an EdgeTransferError naming the file.

Each mutant goes through :func:`isolate.probe` (a child process), then, only if the probe
passed, through an in-process :class:`Classifier`, and through the CLI
``python -m edgetransfer.runtime bench``. Slow: 2 x 60 mutants, two children at a time, in the suite;
``EDGETRANSFER_FUZZ_N=150`` (or more) for a deeper run, e.g. after touching a runtime or a reader.
"""

import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from edgetransfer.errors import EXIT_TOOLCHAIN, EXIT_USAGE, EdgeTransferError
from edgetransfer.runtime import Classifier, isolate

N_PER_FORMAT = int(os.environ.get("EDGETRANSFER_FUZZ_N", "60"))  # per format; each costs two children
SEED = 1913
WORKERS = 2  # the CI box and the dev machine have 2 cores


def mutate(good: bytes, rng: random.Random) -> bytes:
    """1-4 of: flip a byte, insert one, delete one, truncate. Positions favour the ends of the file,
    where the flatbuffer/protobuf tables and the metadata live (the middle is mostly weights)."""
    raw = bytearray(good)
    for _ in range(rng.randint(1, 4)):
        region = rng.random()
        n = len(raw)
        if region < 0.35:
            at = rng.randrange(min(n, 65_536))
        elif region < 0.7:
            at = rng.randrange(max(0, n - 700_000), n)
        else:
            at = rng.randrange(n)
        op = rng.choices("fidt", weights=(6, 2, 2, 1))[0]
        if op == "f":
            raw[at] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        elif op == "i":
            raw.insert(at, rng.randrange(256))
        elif op == "d":
            del raw[at]
        else:
            del raw[max(at, 16) :]
    return bytes(raw)


def _limit_bench():  # keep an unprotected bench of a hostile file from eating the shared machine
    resource.setrlimit(resource.RLIMIT_AS, (2048 * 2**20, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def bench_cli(path: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgetransfer.runtime",
            "bench",
            str(path),
            "--threads",
            "1",
            "--budget-s",
            "0.02",
            "--warmup",
            "1",
            "--min-runs",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=_limit_bench,
        check=False,
    )
    return res.returncode, res.stderr


@pytest.mark.slow
def test_mutants_never_kill_the_parent(tiny_exports, tmp_path):
    t0 = time.perf_counter()
    sources = [tiny_exports[("tflite", "int8")].path, tiny_exports[("onnx", "int8")].path]
    mutants = []
    for src in sources:
        good, rng = src.read_bytes(), random.Random(f"{SEED}{src.suffix}")
        for i in range(N_PER_FORMAT):
            path = tmp_path / f"m{i:03d}{src.suffix}"
            path.write_bytes(mutate(good, rng))
            mutants.append(path)

    def probe_then_bench(path: Path):
        try:
            isolate.probe(path, timeout_s=60, memory_mb=2048)
            probed = None
        except EdgeTransferError as exc:
            probed = exc
        return path, probed, bench_cli(path)

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(probe_then_bench, mutants))

    outcomes, unprotected_bench = Counter(), []
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    for path, probed, (rc, err) in results:
        if probed is not None:
            assert probed.exit_code in (EXIT_USAGE, EXIT_TOOLCHAIN) and probed.path == str(path), probed.render()
            outcomes["probe: " + _kind(probed)] += 1
        else:
            try:  # in-process, only because the probe passed
                Classifier(path).classify(image, top=3)
                outcomes["probe ok, classify ok"] += 1
            except EdgeTransferError as exc:
                assert exc.exit_code in (EXIT_USAGE, EXIT_TOOLCHAIN) and exc.path == str(path), exc.render()
                outcomes["probe ok, classify " + type(exc).__name__] += 1
        if rc < 0 and probed is not None and "crashed with" in probed.problem:
            unprotected_bench.append((path.name, rc))  # bench does not probe yet (lead's integration)
            continue
        assert rc in (0, EXIT_USAGE, EXIT_TOOLCHAIN), f"bench {path.name}: rc {rc}\n{err[-2000:]}"
        assert rc == 0 or str(path) in err, err[-2000:]
        outcomes[f"bench rc {rc}"] += 1
    wall = time.perf_counter() - t0
    print(f"\n{len(mutants)} mutants in {wall:.0f} s: {dict(sorted(outcomes.items()))}")
    assert len(mutants) == 2 * N_PER_FORMAT and outcomes["probe ok, classify ok"] > 0
    if unprotected_bench:
        pytest.xfail(
            f"{len(unprotected_bench)} mutants that crash the runtime still kill an unprotected "
            f"`python -m edgetransfer.runtime bench` ({unprotected_bench[:5]}): bench must call "
            f"isolate.probe() first"
        )


def _kind(exc: EdgeTransferError) -> str:
    for word in ("crashed with", "memory limit", "did not finish"):
        if word in exc.problem:
            return word
    return type(exc).__name__
