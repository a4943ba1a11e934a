"""Per-epoch checkpoints that an interruption cannot tear, and a restore that never crashes.

Keras' ``BackupAndRestore`` writes ``latest.weights.h5`` in place: a Ctrl-C, ``kill -9`` or
full disk during that write leaves a torn HDF5 file, and ``--resume`` then dies with Keras'
"A total of N objects could not be loaded" (issue #26). Here each epoch's weights go to a
temporary name renamed into place (``epoch-0003.weights.h5``; the epoch is in the name, so
there is no second file to disagree with), the previous good one is kept, and a restore
tries them newest first, each checked by loading it, with the model's values put back
when a load fails half-way. Nothing loadable: the phase restarts from its beginning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from .. import _lazy

log = logging.getLogger("edgetransfer")
KEEP = 2  # the newest and the one before it: a torn newest falls back one epoch, not the phase
_NAME = re.compile(r"^epoch-(\d+)\.weights\.h5$")


def _candidates(backup: Path) -> list[tuple[int, Path]]:
    """Checkpoints newest first; Keras' own layout (``latest.weights.h5`` + metadata) last."""
    found = []
    for f in backup.glob("epoch-*.weights.h5"):
        m = _NAME.match(f.name)
        if m:
            found.append((int(m.group(1)), f))
    found.sort(reverse=True)
    legacy = backup / "latest.weights.h5"
    if legacy.is_file():
        try:
            epoch = int(json.loads((backup / "training_metadata.json").read_text())["epoch"])
            found.append((epoch, legacy))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return found


def save(model, backup: Path, epoch: int) -> Path:
    """Write the weights after ``epoch`` finished epochs atomically; drop all but the newest ``KEEP``."""
    backup.mkdir(parents=True, exist_ok=True)
    final = backup / f"epoch-{epoch:04d}.weights.h5"
    tmp = backup / f".epoch-{epoch:04d}.tmp.weights.h5"
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for _, old in _candidates(backup)[KEEP:]:
        old.unlink(missing_ok=True)
    return final


def _state(model) -> list:
    opt = getattr(model, "optimizer", None)
    return list(model.weights) + (list(opt.variables) if opt is not None and opt.built else [])


def restore(model, backup: Path) -> int | None:
    """Load the newest loadable checkpoint in ``backup``; its epoch, or None (nothing usable).

    A torn or unreadable file is skipped with a ``warning:`` line, never raised: a load that
    fails half-way has its variables put back, so a fallback starts from clean values.
    """
    candidates = _candidates(backup) if backup.is_dir() else []
    if not candidates:
        return None
    opt = getattr(model, "optimizer", None)
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)  # so the optimizer's slots load too (as Keras does)
    variables = _state(model)
    saved = [v.numpy() for v in variables]
    for epoch, path in candidates:
        try:
            model.load_weights(str(path))
            return epoch
        except Exception as exc:  # h5py OSError, Keras ValueError ("objects could not be loaded"), ...
            for v, value in zip(variables, saved):
                v.assign(value)
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            log.warning("the checkpoint %s is torn or unreadable (%s); trying an older one", path, first)
    return None


def truncate_log(csv_log: Path, epochs: int) -> None:
    """Keep the CSV log's header and first ``epochs`` rows (a fallback checkpoint is older than it)."""
    if not csv_log.is_file():
        return
    lines = csv_log.read_text().splitlines(keepends=True)
    if len(lines) > epochs + 1:
        from ..io import atomic_write

        atomic_write(csv_log, "".join(lines[: epochs + 1]))


def callback(backup: Path, csv_log: Path):
    """A Keras callback to put before every other: at the start of ``fit`` it restores the newest
    loadable checkpoint (or restarts the phase) and trims the CSV log before ``CSVLogger`` opens
    it; at each epoch's end it saves, before the log's row is written (as Keras' own
    ``BackupAndRestore`` did: an interruption then leaves the checkpoint, at worst without its row)."""
    keras = _lazy.keras()

    class SafeBackup(keras.callbacks.Callback):  # type: ignore[name-defined]  # keras is lazy
        def on_train_begin(self, logs=None):
            had = backup.is_dir() and any(backup.iterdir())
            epoch = restore(self.model, backup)
            if epoch is None:
                if had:
                    log.warning("no usable checkpoint in %s; this phase restarts from its beginning", backup)
                shutil.rmtree(backup, ignore_errors=True)
                csv_log.unlink(missing_ok=True)
                return
            self.model._initial_epoch = epoch
            truncate_log(csv_log, epoch)

        def on_epoch_end(self, epoch, logs=None):
            save(self.model, backup, epoch + 1)

        def on_train_end(self, logs=None):
            shutil.rmtree(backup, ignore_errors=True)

    return SafeBackup()


def progress_callback(phase: str, epochs: int):
    """A Keras callback: a bar per epoch (batches, then validation) and a line per finished epoch,
    on a terminal (:mod:`edgetransfer.progress`); the same line as an info log otherwise (``-v``)."""
    import time

    from .. import progress

    keras = _lazy.keras()

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[name-defined]  # keras is lazy
        def __init__(self) -> None:
            super().__init__()
            self._bar: progress.Bar | None = None
            self._ctx: contextlib.AbstractContextManager[progress.Bar] | None = None
            self._start = 0.0

        def _open(self, total: int, label: str) -> None:
            self._close()
            self._ctx = progress.bar(total, label)
            self._bar = self._ctx.__enter__()

        def _close(self) -> None:
            if self._ctx is not None:
                self._ctx.__exit__(None, None, None)
            self._ctx = self._bar = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.monotonic()
            self._open(int(self.params.get("steps") or 0), f"batches  {phase} epoch {epoch + 1}/{epochs}")

        def on_train_batch_end(self, batch, logs=None):
            if self._bar is not None:
                self._bar.update(1, suffix=f"loss {float((logs or {}).get('loss', float('nan'))):.4f}")

        def on_test_begin(self, logs=None):
            if self._bar is not None:  # validation inside fit
                self._bar.update(0, suffix="validating")

        def on_epoch_end(self, epoch, logs=None):
            self._close()
            logs = logs or {}
            keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs]
            text = f"{phase} epoch {epoch + 1}/{epochs}  " + "  ".join(f"{k} {float(logs[k]):.4f}" for k in keys)
            text += f"  ({time.monotonic() - self._start:.1f}s)"
            if progress.active():
                progress.line("  " + text)
            else:
                log.info("%s", text)

        def on_train_end(self, logs=None):
            self._close()

    return EpochProgress()
