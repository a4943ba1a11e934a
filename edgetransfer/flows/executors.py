"""Where a sweep's configuration groups run: this process, a local process pool, or a Ray cluster.

A group (one backbone x input size: train once, export its precisions, score them) is one task:
a picklable job in, a JSON-able result (``SweepPoint.to_json`` documents and counters) out. The
executor only schedules; what a task does is the sweep's business (:mod:`.sweep`), so the three
executors give the same configurations.

Failures, the same rule everywhere (Ray's own: ``max_retries`` covers a task whose process died,
not a Python exception, which would only fail again):

* the process running a task died (killed, out of memory, a crashed converter): the task runs once
  more; dying twice reports it as failed and the other tasks go on;
* the task raised: reported as failed at once (its error says why), the others go on;
* Ctrl-C: the tasks not started are cancelled, the running ones stopped, and
  ``KeyboardInterrupt`` is raised again (the configurations finished so far stay saved).

``local`` runs in this process and lets a task's exception propagate, as the sweep always did.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, EdgeTransferError, ToolchainError

EXECUTORS = ("local", "processes", "ray")
RAY_HINT = 'pip install "edgetransfer[ray]"'
RETRIES = 1  # a task whose process died runs once more


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its ``result``, or ``error`` (why it failed) after ``attempts`` tries."""

    index: int
    result: Any = None
    error: str | None = None
    attempts: int = 1


Task = Callable[[Any], Any]
Done = Callable[[Outcome], None]


def check(name: str, jobs: int | None, address: str | None) -> None:
    """Refuse an unknown executor or options that do not apply, before any work."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}", fix=f"use one of {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected 1 or more", fix="pass --jobs N with N >= 1")
    if address and name != "ray":
        raise ConfigError(f"--ray-address with --executor {name}", fix="add --executor ray, or drop --ray-address")
    if address:
        from .ray_address import reachable

        reachable(address)


def run(name: str, fn: Task, jobs: Sequence[Any], done: Done, *, workers: int | None = None, address=None) -> None:
    """Run ``fn(job)`` for every job on executor ``name``; ``done`` is called in this process, in
    completion order, once per job."""
    if name == "local":
        for i, job in enumerate(jobs):
            done(Outcome(i, fn(job)))
    elif name == "processes":
        _processes(fn, jobs, done, workers or os.cpu_count() or 1)
    else:
        _ray(fn, jobs, done, workers, address)


def _processes(fn: Task, jobs: Sequence[Any], done: Done, workers: int) -> None:
    """A pool of fresh interpreters (spawn: no TensorFlow state forked from this process).

    At most ``workers`` tasks are in flight, so a dead worker (which breaks the whole pool) charges
    an attempt only to the tasks that were running, not to those still queued."""
    attempts = dict.fromkeys(range(len(jobs)), 0)
    queue = list(range(len(jobs)))
    ctx = multiprocessing.get_context("spawn")
    while queue:
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(queue)), mp_context=ctx)
        running: dict[cf.Future, int] = {}
        broken: list[int] = []
        try:
            while queue or running:
                while queue and len(running) < workers and not broken:
                    i = queue.pop(0)
                    attempts[i] += 1
                    running[pool.submit(fn, jobs[i])] = i
                if not running:
                    break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    try:
                        result = fut.result()
                    except cf.process.BrokenProcessPool:
                        broken.append(i)  # a worker died: the tasks it broke run again in a new pool
                        continue
                    except Exception as exc:  # the task raised: failed, the others go on
                        done(Outcome(i, error=_why(exc), attempts=attempts[i]))
                        continue
                    done(Outcome(i, result, attempts=attempts[i]))
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        for i in broken:
            if attempts[i] > RETRIES:
                done(Outcome(i, error="its worker process died (twice)", attempts=attempts[i]))
            else:
                queue.insert(0, i)


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (Ctrl-C must not wait for a training run)."""
    procs = list(getattr(pool, "_processes", {}).values())  # the pool has no public way to kill them
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)


def _why(exc: BaseException) -> str:
    if isinstance(exc, EdgeTransferError):
        return str(exc.args[0] if exc.args else exc)
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def import_ray():
    """Ray, or an error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray, which is not installed", fix=RAY_HINT) from exc
    return ray


def _ray(fn: Task, jobs: Sequence[Any], done: Done, workers: int | None, address: str | None) -> None:
    """One Ray task per job (1 CPU each, and a GPU where the cluster has one); ``max_retries=1``."""
    ray = import_ray()
    mine = not ray.is_initialized()  # a cluster this call starts (or joins) it also leaves
    if mine:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        elif workers:
            kwargs["num_cpus"] = workers  # a local cluster of that many CPUs
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 (Ray raises ConnectionError, TimeoutError, RuntimeError...)
            raise ToolchainError(
                f"could not join the Ray cluster at {address or 'this machine'} ({type(exc).__name__}: "
                f"{str(exc)[:200]})",
                fix="check the address (ray status on the head node), or drop --ray-address for a local cluster",
            ) from None
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)(fn)
    refs = {remote.remote(job): i for i, job in enumerate(jobs)}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ref = ready[0]
            i = refs[ref]
            try:
                done(Outcome(i, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:  # the task raised
                cause = getattr(exc, "cause", None)
                done(Outcome(i, error=_why(cause) if isinstance(cause, BaseException) else str(exc)[:300]))
            except ray.exceptions.RayError as exc:  # died, retried once by Ray, died again
                done(Outcome(i, error=f"its Ray worker died: {type(exc).__name__}", attempts=RETRIES + 1))
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if mine:
            ray.shutdown()
