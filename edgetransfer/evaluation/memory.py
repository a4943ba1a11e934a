"""Peak memory that loading and running a file adds to a fresh process."""

from __future__ import annotations

import subprocess
import sys

from ..errors import RuntimeBackendError
from ..records.export import ExportedArtifact

_PEAK_CHILD = """
import re, sys
import numpy as np
from edgetransfer.runtime import load_session

def kb(field):
    with open("/proc/self/status") as fh:
        return int(re.search(field + r":\\s+(\\d+)", fh.read()).group(1))

before = kb("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM (the peak) to the current RSS: proc(5), /proc/pid/clear_refs
except OSError:
    before = kb("VmHWM")  # cannot reset: what the run adds above the imports' own peak
session = load_session(sys.argv[1], int(sys.argv[2]) if sys.argv[2] else None)
batch = np.random.default_rng(0).uniform(0, 255, (1, int(sys.argv[3]), int(sys.argv[3]), 3)).astype(np.float32)
for _ in range(5):
    session.run(batch)
print((kb("VmHWM") - before) / 1024)
"""


def peak_memory_mb(art: ExportedArtifact, target, *, timeout_s: float = 120) -> float:
    """Peak resident memory that loading and running ``art`` adds to a fresh Python process, in MB:
    the runtime's own libraries, the weights and the arena (Linux: the peak is reset through
    ``/proc/self/clear_refs`` after the imports, then read as ``VmHWM``)."""
    args = [sys.executable, "-c", _PEAK_CHILD, str(art.path), str(target.threads or ""), str(art.io.size)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeBackendError(
            f"measuring peak memory took over {timeout_s:.0f} s", path=art.path, fix="check the file runs with bench"
        ) from None
    try:
        return round(float(out.stdout.strip().splitlines()[-1]), 2)
    except (ValueError, IndexError):
        raise RuntimeBackendError(
            f"measuring peak memory failed: {(out.stderr or out.stdout).strip()[-300:]}",
            path=art.path,
            fix="run `python -m edgetransfer.runtime bench` on the file to see why",
        ) from None
