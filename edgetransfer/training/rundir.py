"""The run directory: ``<out>.partial`` while training, renamed to ``<out>`` when complete.

Holds the lock that keeps two runs out of one folder, the resume contract (same settings,
same data, else refuse and show what differs), and :class:`TrainedModel`, the finished run
every later stage starts from.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

from .. import _lazy
from ..errors import ConfigError, DiskFullError
from ..io import LOCK_FILE, close_failed_writes, locked
from ..records.run import ResumeState
from ..records.run import TrainedModel as TrainedModel  # the finished run, read back (a record)
from .config import TrainConfig

RESUME_FILE = "config.json"
log = logging.getLogger("edgetransfer")
# What counts as progress worth protecting in a .partial folder: a phase backup or a
# finished phase's weights. A folder with only config.json is a failed start, not a run.
_PROGRESS = ("backup_*", "*.weights.h5", "*.csv")


def _has_progress(partial: Path) -> bool:
    return any(any(partial.glob(p)) for p in _PROGRESS)


@contextlib.contextmanager
def claim(out: Path, resume: bool, what: str = "training run", *, keep_on_error: bool = True) -> Iterator[Path]:
    """The ``.partial`` work folder of ``out``, held under the run lock from the first check to the
    rename: what to refuse is decided before any work, and everything that removes or renames a
    folder happens only while this process holds its lock, so a process that loses the race
    (exit 2) never deletes or renames the winner's work.

    Args:
        out: the run folder to create.
        resume: continue an interrupted ``.partial`` (else one with progress is refused).
        what: the writer, for the message a second one gets ("training run", "import").
        keep_on_error: keep the ``.partial`` when the body raises (training: ``--resume``); else
            remove it (an import has nothing to resume and must leave nothing behind).
    """
    partial = prepare(out, resume)
    with locked(partial, what):
        try:
            _under_lock(out, partial, resume)
        except BaseException:
            _remove_if_empty(partial)
            raise
        try:
            yield partial
        except BaseException:
            if not keep_on_error:
                shutil.rmtree(partial, ignore_errors=True)
            raise
        finalize(partial, out)


def _under_lock(out: Path, partial: Path, resume: bool) -> None:
    """The checks of :func:`prepare` again, now that no other writer can change the answer."""
    if out.exists():  # another writer finished between our checks and our lock
        raise ConfigError("run directory already exists", path=out, fix="choose another --out or delete it")
    if _has_progress(partial):
        if not resume:
            raise ConfigError(
                "an interrupted run is in the way",
                path=partial,
                fix="add --resume to continue it, or delete that folder to start over",
            )
        return
    stale = [p for p in partial.iterdir() if p.name != LOCK_FILE]
    if resume and stale:  # stopped before the first checkpoint: --resume (the printed fix) starts it over
        log.warning("%s: stopped before its first checkpoint; --resume starts the run from the beginning", partial)
    for p in stale:  # a failed start (no checkpoint): nothing to protect
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


def _remove_if_empty(partial: Path) -> None:
    """Remove ``partial`` if it holds nothing but the lock (this process made it; call under the lock)."""
    if all(p.name == LOCK_FILE for p in partial.iterdir()):
        shutil.rmtree(partial, ignore_errors=True)


def disk_full(partial: Path) -> NoReturn:
    """After a full disk while training (Keras checkpoints, weights, model.keras): remove what was
    being written (temporary files: checkpoints are renamed into place, so none is torn) and raise
    a ToolchainError naming the folder. Finished phases, the epoch checkpoints and the epoch logs
    stay, so ``--resume`` continues once there is space.

    Call it after the ``except`` block has ended: h5py files left open by the failed write are
    held by the traceback's frames; they are closed here while the interpreter is whole (HDF5 can
    crash closing them at exit), without h5py printing a traceback for each failed close.
    """
    close_failed_writes()
    # Epoch checkpoints are written under temporary names and renamed (training.checkpoint), so
    # only the temporaries can be torn: the finished checkpoints stay for --resume.
    for tmp in partial.rglob(".*.tmp*"):
        tmp.unlink(missing_ok=True)
    raise DiskFullError(
        "no space left on the device while writing the training checkpoints",
        path=partial,
        fix="free some disk space (or use another --out), then run the same command with --resume",
    )


def _differences(saved: dict, now: dict) -> list[str]:
    out = []
    for section in ("config", "data"):
        a, b = saved.get(section) or {}, now.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: was {a.get(key)!r}, now {b.get(key)!r}")
    return out


def prepare(out: Path, resume: bool) -> Path:
    """The ``.partial`` work folder for ``out``; refuses, before any work, what would lose or mix up
    work. It removes nothing: a failed start is cleared by :func:`claim` under the lock (the
    settings and data of a resume are checked by :func:`check_resume`, also under the lock).
    """
    partial = out.with_name(out.name + ".partial")
    if out.exists():
        raise ConfigError("run directory already exists", path=out, fix="choose another --out or delete it")
    if resume and not partial.exists():
        raise ConfigError(
            "nothing to resume: no interrupted run here", path=out, fix="drop --resume to start a new run"
        )
    if partial.exists() and _has_progress(partial) and not resume and not _is_locked(partial):
        raise ConfigError(
            "an interrupted run is in the way",
            path=partial,
            fix="add --resume to continue it, or delete that folder to start over",
        )
    return partial


def _is_locked(partial: Path) -> bool:
    lock = partial / LOCK_FILE
    if not lock.exists():
        return False
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def check_resume(partial: Path, resume: bool, cfg: TrainConfig, data: dict) -> None:
    """Record this run's settings and data; on resume, refuse any difference and list it."""
    state = ResumeState(config=asdict(cfg), data=data)
    now = {"config": state.config, "data": state.data}
    saved_path = partial / RESUME_FILE
    if resume and saved_path.exists():
        saved = json.loads(saved_path.read_text())
        saved = saved if "config" in saved else {"config": saved}  # schema 1 stored the config alone
        saved = {k: v for k, v in saved.items() if k in now}  # kind and schema are not settings
        diff = _differences(saved, now)
        if diff:
            raise ConfigError(
                "--resume with different settings or data than the interrupted run:\n    " + "\n    ".join(diff),
                path=saved_path,
                fix="repeat the original options on the original data, or start a new --out",
            )
    from ..io import write_json

    write_json(saved_path, state.to_json())


def finalize(partial: Path, out: Path) -> None:
    """Drop checkpoints, rename ``partial`` to ``out`` (atomic), then drop the lock file. Call it
    while holding the lock (:func:`claim` does): a writer that opened the lock before the rename
    still finds it held, one that comes after finds no ``.partial`` or ``out`` already there."""
    for leftover in partial.glob("backup_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    os.replace(partial, out)
    (out / LOCK_FILE).unlink(missing_ok=True)


def versions() -> dict:
    import platform

    import numpy as np

    from .._version import __version__

    tf, keras = _lazy.tf(), _lazy.keras()
    return {
        "edgetransfer": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
