"""Two writers into one ``--out`` at once, N rounds each (issue 37, the race).

For ``import``, ``train`` and ``export``: start two ``edgetransfer`` processes on the same
``--out`` together; one must finish, the other exit 2 (export may also finish second: it replaces
its own index), and the winner's folder must be complete with no ``.partial`` or lock left.

    PYTHONPATH=$PWD python benchmarks/race_rounds.py --rounds 20 --kinds import,train,export

Prints one table per kind; exit 1 if any round broke the rule.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the helper lives with its test

import race_lib  # noqa: E402
from conftest import make_folder, make_split_folder, tiny_keras_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--kinds", default="import,train,export")
    args = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory(prefix="et-race-") as tmp:
        root = Path(tmp)
        data = make_split_folder(root / "images")
        model = root / "user.keras"
        tiny_keras_model().save(model)
        small = make_folder(root / "small", {"a": 6, "b": 6}, size=(32, 32))
        base = root / "base"
        for kind in args.kinds.split(","):
            rounds = []
            for i in range(args.rounds):
                out = root / kind / f"r{i}"
                out.parent.mkdir(exist_ok=True)
                if kind == "import":
                    cmd = ["import", model, "--data", data / "val", "--preprocess", "none", "--out", out]
                    check = race_lib.run_complete
                elif kind == "train":
                    cmd = ["train", "--data", small, *race_lib.TRAIN, "--out", out]
                    check = race_lib.run_complete
                else:
                    if not base.exists():
                        race_lib.race(
                            ["import", model, "--data", data / "val", "--preprocess", "none", "--out", base],
                            base,
                            race_lib.run_complete,
                        )
                    cmd = ["export", base, "--format", "tflite", "--precision", "fp32", "--out", out]
                    check = race_lib.export_complete
                rounds.append(race_lib.race(cmd, out, check))
                print(f"{kind} round {i}: {rounds[-1].codes} {rounds[-1].problem}", flush=True)
            print(race_lib.table(kind, rounds), flush=True)
            bad += sum(not r.ok for r in rounds)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
