"""``sweep --executor``: the process pool and Ray give the configurations, accuracies and picks of
``local``; a task whose process dies runs once more; a task that raises fails alone; bad options
are refused before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_folder

from edgetransfer.errors import ConfigError
from edgetransfer.flows import executors

TARGETS = ("host-cpu", "pixel4-cpu")  # measured (in the driver) and estimated (in the tasks)


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["sweep", "--data", str(data), "--out", str(out), "--backbone", "efficientnet_lite0"]
    args += ["--image-size", "32", "--image-size", "48", "--precision", "fp16", "--precision", "int8"]
    args += [x for t in TARGETS for x in ("--target", t)]
    return [*args, "--epochs", "2", "--calibration-size", "8", "--budget-s", "0.1", "--json", *extra]


def _run(*args: str) -> tuple[int, dict, str]:
    from edgetransfer.cli import cli

    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code in (0, 1), res.stderr
    return res.exit_code, json.loads(res.stdout), res.stderr


def _same(a: dict, b: dict) -> None:
    """Same configurations and accuracies; same picks on the estimated target (host latency is
    measured again, so a host pick may move within noise); host latency measured in both."""
    key = ("backbone", "image_size", "precision", "accuracy", "accuracy_drop", "size_bytes", "macs")
    assert [[c[k] for k in key] for c in a["configs"]] == [[c[k] for k in key] for c in b["configs"]]
    assert [c["latency"]["pixel4-cpu"] for c in a["configs"]] == [c["latency"]["pixel4-cpu"] for c in b["configs"]]
    assert a["best"]["pixel4-cpu"] == b["best"]["pixel4-cpu"]
    assert a["pareto"]["pixel4-cpu"] == b["pareto"]["pixel4-cpu"]
    assert all(c["latency"]["host-cpu"]["provenance"] == "measured" for c in b["configs"])


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-exec")
    data = make_folder(root / "data", {"red": 6, "blue": 6})
    _, doc, _ = _run(*_args(data, root / "local"))
    assert len(doc["configs"]) == 4
    return data, root, doc


@pytest.mark.slow
def test_processes_match_local_and_resume(local):
    data, root, doc = local
    _, par, err = _run(*_args(data, root / "pool", "--executor", "processes", "--jobs", "2"))
    _same(doc, par)
    assert "measured here on" in err  # host latency in the driver, after the tasks
    assert any("host-target latency measured" in n for n in par["notes"])
    _, again, err = _run(*_args(data, root / "pool", "--executor", "processes", "--jobs", "2"))
    assert again["stats"]["reused"] == 4 and again["stats"]["computed"] == 0  # a rerun skips what is done


def _kill_one_task(killed: list, stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen running a sweep task (its title is ``ray::run_group``)."""
    while not stop.is_set() and not killed:
        res = subprocess.run(["pgrep", "-f", "ray::run_group"], capture_output=True, text=True)
        pids = [int(p) for p in res.stdout.split()]
        if pids:
            time.sleep(2)  # inside the task, not at its start
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            except ProcessLookupError:
                continue
        stop.wait(0.3)


@pytest.mark.slow
def test_ray_matches_local_with_a_worker_killed_mid_sweep(local):
    """A local Ray cluster on 127.0.0.1; one worker is killed while it runs a group: Ray runs
    that task again and the sweep finishes every configuration, the same as ``local``."""
    pytest.importorskip("ray")
    import ray

    data, root, doc = local
    killed: list[int] = []
    stop = threading.Event()
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        killer = threading.Thread(target=_kill_one_task, args=(killed, stop), daemon=True)
        killer.start()
        _, par, err = _run(*_args(data, root / "ray", "--executor", "ray"))
    finally:
        stop.set()
        ray.shutdown()
    assert killed, "no Ray worker was seen running a task"
    assert "px: failed" not in err and "will be retried" in err  # Ray says it retried the killed task
    _same(doc, par)


# The executors alone, on toy tasks (seconds): retry of a dead task, failure of a raising one.


def _die_once(job: tuple[str, int]) -> int:
    marker, value = job
    if value == 2 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(3)  # the process dies, as under the OOM killer: no exception reaches the pool
    if value == 3:
        raise ValueError("bad configuration")
    return value * 10


def _collect(name: str, tmp_path: Path, **kw) -> dict[int, executors.Outcome]:
    got: dict[int, executors.Outcome] = {}
    jobs = [(str(tmp_path / "marker"), v) for v in range(5)]
    executors.run(name, _die_once, jobs, lambda o: got.setdefault(o.index, o), **kw)
    return got


def test_processes_retry_a_dead_task_once_and_fail_a_raising_one(tmp_path):
    got = _collect("processes", tmp_path, workers=2)
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert {i: o.result for i, o in got.items() if o.error is None} == {0: 0, 1: 10, 2: 20, 4: 40}
    assert got[2].attempts == 2 and (tmp_path / "marker").exists()  # died once, then finished
    assert "bad configuration" in (got[3].error or "")


def test_ray_retries_a_dead_task_once(tmp_path, monkeypatch):
    """The executor starts a local Ray cluster of 2 CPUs itself, and leaves it at the end."""
    pytest.importorskip("ray")
    import ray

    # Ray's workers import this module by name (the task is pickled by reference), and it imports conftest:
    # put this folder and tests/ on their path.
    here, tests = str(Path(__file__).parent), str(Path(__file__).parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, tests, os.environ.get("PYTHONPATH")])))
    got = _collect("ray", tmp_path, workers=2)
    assert not ray.is_initialized()
    assert {i: o.result for i, o in got.items() if o.error is None} == {0: 0, 1: 10, 2: 20, 4: 40}
    assert (tmp_path / "marker").exists() and "bad configuration" in (got[3].error or "")


def test_bad_executor_options_refused_before_work(tmp_path):
    with pytest.raises(ConfigError, match="--ray-address"):
        executors.check("processes", None, "127.0.0.1:6379")
    with pytest.raises(ConfigError, match="unknown executor"):
        executors.check("slurm", None, None)
    from edgetransfer.cli import cli

    data = make_folder(tmp_path / "data", {"red": 2, "blue": 2})
    res = CliRunner().invoke(cli, [*_args(data, tmp_path / "o"), "--executor", "processes", "--jobs", "0"])
    assert res.exit_code == 2


_CTRL_C = """
import os, sys, time
from edgetransfer.flows import executors

def nap(seconds):
    print(os.getpid(), flush=True)
    time.sleep(seconds)
    return seconds

if __name__ == "__main__":
    try:
        executors.run("processes", nap, [600, 600, 600], lambda o: None, workers=2)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def test_processes_ctrl_c_stops_the_workers(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) ends the pool's workers now,
    not after their 10-minute tasks, and the sweep's process exits 130."""
    (tmp_path / "naps.py").write_text(_CTRL_C)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[3])])}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "naps.py")], stdout=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    pids = [int(proc.stdout.readline()), int(proc.stdout.readline())]  # both workers inside a task
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    time.sleep(0.5)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
