"""File helpers written once: atomic writes, writability checks, hashing.

Every file edgetransfer writes goes through :func:`atomic_write` (or :func:`atomic_path`
for writers that need a path): a temporary name in the same folder, renamed over the
target only when complete, so an interrupted or failed write never leaves half a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import hashlib
import io as _stdio
import json
import os
import re
import stat
import tempfile
import unicodedata
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


def close_failed_writes() -> None:
    """Free the objects of a write that failed (call it after the ``except`` block has ended).

    h5py files left open by a write that hit a full disk are held by the traceback's frames;
    collected here, while the interpreter is whole, they close quietly. Left to the interpreter's
    exit, HDF5 closes them after h5py's own modules are torn down and the process dies of
    SIGSEGV after printing a correct message (issue 37). h5py prints a traceback for each
    failed close on Python's stderr: silenced.
    """
    with contextlib.redirect_stderr(_stdio.StringIO()):
        gc.collect()


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


# -- one writer per folder ------------------------------------------------------------------------

LOCK_FILE = ".lock"


@contextlib.contextmanager
def locked(partial: Path, what: str = "training run", *, remove: bool = False) -> Iterator[None]:
    """An exclusive lock on ``partial`` for this process's lifetime (released by the OS on
    ``kill -9``), so a second writer (``train``, ``import``, ``export``, ``sweep``) into the same folder is told a
    live one holds it.

    The process that does not get the lock raises at once and touches nothing: the folder is the
    winner's (issue 37: the loser of a race deleted the winner's ``.partial``). A lock file that
    was removed or replaced between our ``open`` and ``flock`` (a winner finishing: ``rundir.finalize``
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


# -- what edgetransfer may write over ------------------------------------------------------------
#
# The rule (docs/reliability.md): edgetransfer never writes over a file it did not create in this
# command unless it is its own output of the same kind (a report over a report, an export index
# over an export index), never writes outside the folder the user named, and never writes into a
# data folder. The commands check it at their entry, before any work.

# Our .md and .html reports carry no "kind"; they start with these lines (report.markdown/html_page).
_TEXT_KINDS = {
    ".md": ("# edgetransfer validation", "edgetransfer.validation"),
    ".html": ("<title>edgetransfer report</title>", "edgetransfer.validation"),
    ".xml": ('<testsuite name="edgetransfer.check"', "edgetransfer.junit"),  # report.junit (JUNIT_KIND)
}


def existing_kind(path: str | Path) -> str | None:
    """The edgetransfer kind of an existing file: a JSON record's ``kind``, or ``edgetransfer.validation``
    for one of our Markdown/HTML reports; ``None`` for anything else (not ours, unreadable)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    text = head.decode("utf-8", errors="replace")
    marker = _TEXT_KINDS.get(path.suffix.lower())
    if marker is not None:
        return marker[1] if marker[0] in text else None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) and kind.startswith("edgetransfer.") else None


def require_own_output(path: str | Path, kinds: str | tuple[str, ...], what: str) -> Path:
    """Refuse, before any work, to write ``path`` over a file that is not our own ``what`` of ``kinds``.

    Raises:
        ConfigError: ``path`` is a folder, not a regular file (a FIFO, a device), or an existing file
            that is not an edgetransfer record of one of ``kinds`` (a run manifest, the user's file).
    """
    path = Path(path)
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if not os.path.lexists(path):
        return path
    if path.is_dir():
        raise ConfigError(f"the {what} path is a folder", path=path, fix=f"name a file for the {what}")
    if not path.is_file():
        raise ConfigError(
            f"the {what} path is not a regular file (a FIFO, socket or device)",
            path=path,
            fix=f"name a new file for the {what}",
        )
    found = existing_kind(path)
    if found not in kinds:
        held = f"an edgetransfer {found.split('.', 1)[1]} record" if found else "a file edgetransfer did not write"
        raise ConfigError(
            f"refusing to write the {what} over {held}",
            path=path,
            fix=f"choose another path; edgetransfer only replaces its own {what} there",
        )
    return path


# CI conventions (issue #38): pytest's --junitxml, ctest's --output-junit and the GitHub Actions test
# reporters replace the report path they are given; CI scripts create it first (mktemp) or keep the
# previous job's JUnit from another tool there. A report path the user names is therefore replaced
# when it holds nothing, or a report of its own kind: JUnit XML from any tool (a <testsuite> or
# <testsuites> root, the schema's two roots), our own Markdown/HTML/JSON report. Anything else (a
# model, a manifest, an image, a README) stays refused: the rule protects the user's data.
JUNIT_KIND = "edgetransfer.junit"
_JUNIT_ROOT = re.compile(rb"(?:\s|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)*<(?:testsuites?)[\s>/]", re.S)


def is_junit_xml(path: str | Path) -> bool:
    """``path`` is JUnit XML written by any tool: its root element is ``<testsuite>`` or ``<testsuites>``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return _JUNIT_ROOT.match(head.removeprefix(b"\xef\xbb\xbf")) is not None


def require_report_path(path: str | Path, kinds: str | tuple[str, ...], what: str) -> Path:
    """Refuse, before any work, a report path (``--junit``, ``--report``, ``--html``) that holds the
    user's data; an empty file, JUnit XML of any tool (when ``kinds`` has :data:`JUNIT_KIND`) and our
    own report of ``kinds`` are replaced.

    Raises:
        ConfigError: as :func:`require_own_output`, for anything else.
    """
    path = Path(path)
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if path.is_file() and (path.stat().st_size == 0 or (JUNIT_KIND in kinds and is_junit_xml(path))):
        return path
    return require_own_output(path, kinds, what)


def require_regular_file(path: str | Path, what: str, max_bytes: int | None = None) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes``; checked before it is opened, since
    opening a FIFO blocks until a writer comes and a device (``/dev/zero``) never ends (issue 37).

    Raises:
        ConfigError: missing, a folder, a FIFO, socket or device, or larger than ``max_bytes``.
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the {what} ({exc.strerror or exc})", path=path, fix=f"pass an existing {what}"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"the {what} is a folder, not a file", path=path, fix=f"pass the {what} itself")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"the {what} is not a regular file (a FIFO, socket or device): refused before reading it",
            path=path,
            fix=f"pass a {what} saved on disk",
        )
    if max_bytes is not None and info.st_size > max_bytes:
        raise ConfigError(
            f"the {what} is {info.st_size:,} bytes, over the {max_bytes:,} a {what} may have",
            path=path,
            fix=f"pass the right file (a {what} is far smaller)",
        )
    return path


def is_within(path: str | Path, folder: str | Path) -> bool:
    """``path`` is ``folder`` or inside it (symbolic links resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def require_outside(path: str | Path, folder: str | Path, what: str, other: str) -> Path:
    """Refuse ``path`` (the ``what`` to write) equal to or inside ``folder`` (the ``other``).

    Raises:
        ConfigError: ``path`` is ``folder`` or lies inside it.
    """
    if is_within(path, folder):
        raise ConfigError(
            f"the {what} is inside the {other} ({folder}): edgetransfer never writes there",
            path=path,
            fix=f"choose a {what} outside {folder}",
        )
    return Path(path)


_UNSAFE_COMPONENT = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_component(name: object, what: str = "name") -> str:
    """``name`` if it is safe as one path component, else a :class:`ConfigError`.

    Safe: a non-empty string of at most 255 bytes, no ``/`` or ``\\``, no control character
    (newline, NUL, tab...), not ``.`` or ``..``, not starting with ``-`` or ``.``.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a string, not {type(name).__name__} ({name!r})", fix=f"give {what} as text")
    problem = None
    if not name.strip():
        problem = "is empty"
    elif _UNSAFE_COMPONENT.search(name):
        problem = "holds a slash, backslash or control character (newline, NUL, tab)"
    elif name.startswith((".", "-")):
        problem = "starts with '.' or '-'"
    elif len(name.encode("utf-8", errors="replace")) > 255:
        problem = "is longer than 255 bytes"
    if problem:
        raise ConfigError(
            f"{what} {name!r} {problem}: it must be usable as one file or folder name",
            fix="use letters, digits, '-', '_' and '.' (not first)",
        )
    return name


def label_problem(name: object) -> str | None:
    """Why ``name`` cannot be a class label, or ``None``. A label is one line of ``labels.txt``
    (MediaPipe, the Task Library, our metadata): a line break of any kind (``str.splitlines``
    also splits on U+2028, U+2029, U+0085, form feed...), another control character or a path
    (``/``) would shift every later label or leave the folder it names."""
    if not isinstance(name, str) or not name.strip():
        return "is not a non-empty text"
    bad = sorted({repr(c) for c in name if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c == "/"})
    return f"holds {', '.join(bad)}" if bad else None


def safe_component(name: str) -> str:
    """A folder name made from ``name`` that stays one path component, for names picked by the
    toolkit (e.g. the sweep's ``picks/<profile name>``): unsafe characters become ``_``, a leading
    ``.``/``-`` is prefixed with ``_``, empty becomes ``_``, long names are cut to 200 bytes plus a
    hash so distinct names stay distinct. :func:`check_component` refuses instead."""
    clean = re.sub(r"[^A-Za-z0-9._+@=-]", "_", name)
    if clean.startswith((".", "-")) or not clean:
        clean = "_" + clean
    if clean != name or len(clean) > 200:
        clean = f"{clean[:180]}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"
    return clean


def append_text(path: str | Path, text: str, what: str) -> str | None:
    """Append ``text`` to a file someone else owns (``$GITHUB_STEP_SUMMARY``); never raises.

    Returns ``None`` when written, else why not (a folder, not writable...), for a warning: a
    summary that cannot be written must not turn a passed check into a failure.
    """
    path = Path(path)
    if path.is_dir():
        return f"{what} {path} is a folder, not a file"
    if path.exists() and not path.is_file():
        return f"{what} {path} is not a regular file"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        return f"cannot append to {what} {path} ({exc.strerror or exc})"
    return None
