"""Multi-worker training for real: two worker processes on 127.0.0.1 with TF_CONFIG each.

Checks that both join, the global batch is split, only the chief writes the run folder,
the result matches a single-worker run with the same global batch, and the failure modes
(a worker that never joins, workers started with different options) are clear errors.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, make_folder

from edgetransfer.training import TrainedModel

pytestmark = pytest.mark.slow

# Tiny and deterministic: 32 px, no augmentation and no dropout, so one worker and two
# workers see the same batches and differ only by float summation order.
ARGS = [
    "train",
    "--backbone",
    "efficientnet_lite0",
    "--image-size",
    "32",
    "--workflow",
    "fine-tune",
    "--unfreeze",
    "10",
    "--epochs",
    "3",
    "--fine-tune-epochs",
    "2",
    "--batch-size",
    "8",
    "--learning-rate",
    "0.01",
    "--val-split",
    "0.34",
    "--no-augment",
    "--dropout",
    "0",
    "--json",
]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(workers: list[str] | None, index: int, tmp) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmp)}
    env.pop("TF_CONFIG", None)
    if workers:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    return env


def _start(args, env):
    cmd = [sys.executable, "-m", "edgetransfer", *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def colours(tmp_path):
    return make_folder(tmp_path / "colours", {"red": 12, "green": 12, "blue": 12}, size=(36, 36))


def test_two_workers_match_one(colours, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    tmps = [tmp_path / f"tmp{i}" for i in range(2)]
    for t in tmps:
        t.mkdir()
    out = tmp_path / "multi"
    procs = [_start([*ARGS, "--data", colours, "--out", out], _env(workers, i, tmps[i])) for i in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    m = TrainedModel.from_dir(out).manifest.to_json()
    rt = m["config"]["runtime"]
    assert rt["workers"] == 2 and rt["replicas"] == 2 and rt["global_batch"] == 8 and rt["per_worker_batch"] == 4
    assert rt["task"] == "worker:0" and "2 workers" in m["strategy"]
    # the non-chief wrote only to a temporary folder, and removed it
    assert not any(tmps[1].iterdir()), list(tmps[1].iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["colours", "multi", "tmp0", "tmp1"]
    # same global batch on one worker: the same result within float tolerance
    single = _start([*ARGS, "--data", colours, "--out", tmp_path / "single"], _env(None, 0, tmps[0]))
    _, err = single.communicate(timeout=600)
    assert single.returncode == 0, err[-3000:]
    s = TrainedModel.from_dir(tmp_path / "single").manifest.to_json()
    assert s["config"]["runtime"]["replicas"] == 1
    # measured: equal to 6 digits (BatchNorm frozen, so the per-replica batch of 4 does not matter)
    assert abs(m["metrics"]["val_loss"] - s["metrics"]["val_loss"]) < 2e-3
    assert m["metrics"]["val_accuracy"] == s["metrics"]["val_accuracy"]
    assert np.allclose(m["history"]["loss"], s["history"]["loss"], atol=2e-3)
    assert np.allclose(m["history"]["val_loss"], s["history"]["val_loss"], atol=2e-3)


def test_missing_worker_times_out_naming_it(colours, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    p = _start(
        [*ARGS, "--data", colours, "--out", tmp_path / "r", "--worker-timeout", "3"], _env(workers, 0, tmp_path)
    )
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and workers[1] in err and "did not join within 3 s" in err
    assert not (tmp_path / "r").exists()


def test_mismatched_commands_refused(colours, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = tmp_path / "r"
    procs = [
        _start([*ARGS, "--data", colours, "--out", out, "--seed", str(i)], _env(workers, i, tmp_path))
        for i in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [2, 2], errs
    assert all("different settings or data" in e and workers[1] in e for e in errs)
    assert not out.exists()
