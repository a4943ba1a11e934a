"""File helpers written once: atomic writes, writability checks, hashing.

Every file edgetransfer writes goes through :func:`atomic_write` (or :func:`atomic_path`
for writers that need a path): a temporary name in the same folder, renamed over the
target only when complete, so an interrupted or failed write never leaves half a file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError, ToolchainError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    The temporary name keeps the suffix (some writers, e.g. Keras, insist on ``.keras``).
    ``mkstemp`` creates it 0600; before the rename it gets the mode a plain ``open()`` would
    have given (0666 less the umask), so a CI job's or container's other users can read it.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise ToolchainError(
                "no space left on the device while writing",
                path=path,
                fix="free some disk space (or write to another folder) and run again",
            ) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc``: Linux >= 4.7),
    else by the set-and-restore of ``os.umask`` (briefly process-wide, hence second)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` (0666) or ``mkdir()`` (0777) would give under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return path


def write_json(path: str | Path, doc: Any) -> Path:
    """``doc`` as indented JSON, atomically (non-JSON values become strings)."""
    return atomic_write(path, json.dumps(doc, indent=2, default=str) + "\n")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def require_writable(path: str | Path, what: str = "output") -> Path:
    """Fail before any work if ``path`` (a file to be written) cannot be created."""
    path = Path(path)
    folder = path.parent if path.suffix else path
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write the {what} here: {probe} is not writable", path=path, fix="choose a folder you can write to"
        )
    return path
