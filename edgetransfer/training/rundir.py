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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

from .. import _lazy
from ..errors import ConfigError, DataError, DiskFullError, UnsafeFileError
from ..io import close_failed_writes
from ..records import RunManifest
from ..records.run import ResumeState
from .config import TrainConfig

RESUME_FILE = "config.json"
LOCK_FILE = ".lock"
log = logging.getLogger("edgetransfer")
# What counts as progress worth protecting in a .partial folder: a phase backup or a
# finished phase's weights. A folder with only config.json is a failed start, not a run.
_PROGRESS = ("backup_*", "*.weights.h5", "*.csv")


@dataclass(frozen=True)
class TrainedModel:
    """A finished run directory: ``model.keras``, ``manifest.json`` and two PNGs."""

    run_dir: Path
    manifest: RunManifest = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def input_size(self) -> int:
        return int(self.manifest.input_size)

    @property
    def has_float_model(self) -> bool:
        """Whether the run has a Keras float model (a run imported from a .tflite/.onnx has none)."""
        return "model" in self.manifest.files

    @property
    def model_path(self) -> Path:
        if not self.has_float_model:
            raise DataError(
                "this run has no float Keras model (it was imported from an exported file)",
                path=self.run_dir / "manifest.json",
                fix="measure the file's own accuracy, or import the original Keras model for a float reference",
            )
        path = (self.run_dir / self.manifest.files["model"]).resolve()
        if self.run_dir.resolve() not in path.parents:
            raise UnsafeFileError(
                f"manifest.json points the model outside the run folder ({path})",
                path=self.run_dir / "manifest.json",
                fix="restore the run's own manifest.json",
            )
        return path

    @property
    def val_accuracy(self) -> float | None:
        return self.manifest.metrics.val_accuracy

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> TrainedModel:
        """Open a finished run; a missing, partial or broken one is a clear error."""
        run_dir = Path(run_dir)
        path = run_dir / "manifest.json"
        if not path.is_file():
            partial = run_dir.with_name(run_dir.name + ".partial")
            hint = (
                " (an interrupted run: finish it with `edgetransfer train ... --resume`)" if partial.exists() else ""
            )
            raise ConfigError(
                f"not a finished run directory: no manifest.json{hint}",
                path=run_dir,
                fix="pass the --out folder of a finished `edgetransfer train`",
            )
        return cls(run_dir, RunManifest.read(path))

    def load_model(self):  # -> keras.Model
        """The Keras model, loaded with ``safe_mode`` (no code from the file runs)."""
        from ..safe_keras import load_model

        return load_model(self.model_path)


def _has_progress(partial: Path) -> bool:
    return any(any(partial.glob(p)) for p in _PROGRESS)


@contextlib.contextmanager
def locked(partial: Path, what: str = "training run", *, remove: bool = False) -> Iterator[None]:
    """An exclusive lock on ``partial`` for this process's lifetime (released by the OS on
    ``kill -9``), so a second ``train`` (or ``sweep``) into the same ``--out`` is told a live one holds it.

    The process that does not get the lock raises at once and touches nothing: the folder is the
    winner's (issue 37: the loser of a race deleted the winner's ``.partial``). A lock file that
    was removed or replaced between our ``open`` and ``flock`` (a winner finishing: :func:`finalize`
    renames the folder, then removes its lock) is lost too: the inode check is the usual lock-file
    idiom (e.g. ``filelock``'s ``UnixFileLock`` and Debian's ``lockfile-progs``). ``remove``: unlink
    the lock file on release (safe because of that check), for folders that must not keep it.
    """
    partial.mkdir(parents=True, exist_ok=True)
    lock = partial / LOCK_FILE
    busy = ConfigError(
        f"another {what} finished or removed this folder while this one started",
        path=partial,
        fix="check the folder; choose another --out to write a new one",
    )
    try:
        fh = open(lock, "a+")  # noqa: SIM115 (held for the whole run)
    except FileNotFoundError:  # the folder was renamed away (a winner finished) after our mkdir
        raise busy from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        who = fh.read().strip() or "another process"
        fh.close()
        raise ConfigError(
            f"a live {what} ({who}) is writing this folder",
            path=partial,
            fix="wait for it to finish, or choose another --out",
        ) from None
    if not _same_file(fh, lock):
        fh.close()
        raise busy
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        if remove and _same_file(fh, lock):
            lock.unlink(missing_ok=True)
        fh.close()


def _same_file(fh, path: Path) -> bool:
    """Whether the open ``fh`` is still the file at ``path`` (not unlinked, renamed or replaced)."""
    try:
        a, b = os.fstat(fh.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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
