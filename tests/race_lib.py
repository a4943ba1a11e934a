"""Two writers racing for one ``--out`` (issue 37): the helper the race test and
``benchmarks/race_rounds.py`` share.

Each round starts two real ``edgetransfer`` processes on the same ``--out`` at the same moment
and records their exit codes, then checks what is left: the winner's folder complete (its
manifest parses and every file it lists exists with its sha256), no ``.partial`` and no lock
file left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a tiny training run: no downloaded weights, one epoch at 32 px
TRAIN = ["--backbone", "efficientnet_lite0", "--weights", "none", "--image-size", "32", "--epochs", "1"]
TRAIN += ["--workflow", "features", "--batch-size", "8"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


@dataclass(frozen=True)
class Round:
    codes: tuple[int, int]
    complete: bool
    leftovers: tuple[str, ...]
    problem: str
    seconds: float

    @property
    def ok(self) -> bool:
        """One finished, the other was refused (2) or, for writers that may replace their own
        output (export), finished after it; the folder complete and nothing left over."""
        return 0 in self.codes and set(self.codes) <= {0, 2} and self.complete and not self.leftovers


def race(args: list[str], out: Path, check, timeout_s: float = 600) -> Round:
    """Start ``edgetransfer *args`` twice at once (``--out`` is in ``args``); ``check(out)`` says
    what is wrong with the result ("" when complete)."""
    cmd = [sys.executable, "-m", "edgetransfer", *map(str, args)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=timeout_s)[1] for p in procs]
    codes = (procs[0].returncode, procs[1].returncode)
    problem = check(out)
    if set(codes) - {0, 2}:
        problem += " | " + " | ".join(e.strip().splitlines()[-1] for e in errs if e.strip())
    leftovers = tuple(
        str(p.relative_to(out.parent))
        for p in (out.with_name(out.name + ".partial"), out / ".lock", out / "export" / ".lock")
        if os.path.lexists(p)
    )
    return Round(codes, not problem, leftovers, problem, time.perf_counter() - start)


def run_complete(out: Path) -> str:
    """ "" when ``out`` is a finished run: its manifest parses and its files exist."""
    from edgetransfer.training import TrainedModel

    try:
        run = TrainedModel.from_dir(out)
    except Exception as exc:  # noqa: BLE001 (reported, not raised: the round's outcome)
        return f"run: {exc}"
    missing = [f for f in run.manifest.files.values() if not (out / f).exists()]
    return f"run: missing {missing}" if missing else ""


def export_complete(out: Path) -> str:
    """ "" when ``out`` holds an export index whose every file exists with the sha256 it lists."""
    from edgetransfer.io import sha256_file

    index = out / "manifest.json"
    try:
        doc = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        return f"export: no index ({exc})"
    names = doc.get("artifacts") or []
    if not names:
        return "export: the index lists no file"
    for name in names:
        path, side = out / name, out / f"{name}.manifest.json"
        try:
            digest = json.loads(side.read_text())["sha256"]
        except (OSError, ValueError, KeyError) as exc:
            return f"export: {side.name} unreadable ({exc})"
        if not path.is_file() or sha256_file(path) != digest:
            return f"export: {name} missing or not the file its manifest names"
    return ""


def table(kind: str, rounds: list[Round]) -> str:
    counts: dict[tuple[int, int], int] = {}
    for r in rounds:
        key = tuple(sorted(r.codes))
        counts[key] = counts.get(key, 0) + 1  # type: ignore[index]
    ok = sum(r.ok for r in rounds)
    lines = [f"{kind}: {len(rounds)} rounds, {ok} as required; exit codes (sorted pair): {counts}"]
    lines += [f"  round {i}: {r.codes} {r.problem} {r.leftovers}" for i, r in enumerate(rounds) if not r.ok]
    mean = sum(r.seconds for r in rounds) / max(1, len(rounds))
    lines.append(f"  mean round {mean:.1f} s")
    return "\n".join(lines)


def claim_and_write(out: str, hold_s: float, start_at: float) -> str:
    """A writer without TensorFlow for the fast race test: :func:`rundir.claim` ``out``, write two
    files with a pause between them, finish. Returns "ok" or the refusal's message."""
    from edgetransfer.errors import EdgeTransferError
    from edgetransfer.training import rundir

    time.sleep(max(0.0, start_at - time.time()))
    try:
        with rundir.claim(Path(out), False, "import", keep_on_error=False) as partial:
            (partial / "a.txt").write_text("a")
            time.sleep(hold_s)
            (partial / "manifest.json").write_text("{}")
    except EdgeTransferError as exc:
        return exc.render()
    return "ok"
