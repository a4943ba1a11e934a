"""What a long command is doing, on a terminal: a line as each stage starts, a live bar with an
ETA per epoch / file / attempt / batch, and an elapsed-time ticker for stages with no count.

Drawn only when stderr is a terminal and the command is not ``--json`` (:func:`disable`);
otherwise every call here is a no-op, so CI logs and redirected output stay as they were
(issue #26). Library code may call it freely: it never prints to stdout and costs nothing
when off.

    from edgetransfer import progress

    with progress.stage("exporting 4 files"):        # "» exporting 4 files", then a ticker
        for f in progress.iterate(files, "files"):   # [##########----] 3/4 files  ETA 20s
            ...
    with progress.bar(total=len(batches), label="images") as b:
        for batch in batches:
            ...; b.update(len(batch))
    progress.line("data  160 training / 40 held-out")  # one line above any live bar
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("progress_enabled", default=True)
_LOCK = threading.RLock()
_TICK_S = 1.0  # redraw period of a ticker: a terminal never goes quiet for longer
_WIDTH = 24  # bar cells
_live: list[str] = [""]  # the text of the live (redrawn) line, "" when none


def disable() -> contextvars.Token:
    """Turn progress off for this context (``--json``); returns the token to :func:`restore`."""
    return _ENABLED.set(False)


def enable() -> contextvars.Token:
    """Turn progress back on for this context (each command starts with it on)."""
    return _ENABLED.set(True)


def restore(token: contextvars.Token) -> None:
    _ENABLED.reset(token)


def active() -> bool:
    """Whether anything is drawn: stderr is a terminal and progress is not disabled."""
    if not _ENABLED.get():
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _draw(text: str) -> None:
    with _LOCK:
        _live[0] = text
        sys.stderr.write("\r\033[K" + text)
        sys.stderr.flush()


def _clear() -> None:
    with _LOCK:
        if _live[0]:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        _live[0] = ""


def line(text: str) -> None:
    """Print ``text`` as a line of its own above the live bar (a no-op when off)."""
    if not active():
        return
    write_above(text + "\n")


def write_above(text: str) -> None:
    """Write ``text`` (e.g. a log record) without garbling the live line: clear it, write, redraw.

    Writes even when progress is off; used by the command line's log handler.
    """
    with _LOCK:
        live = _live[0]
        if live:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text)
        if live:
            sys.stderr.write(live)
        sys.stderr.flush()


class Bar:
    """A counted bar; :meth:`update` advances it. Redrawn at most every 0.1 s."""

    def __init__(self, total: int, label: str, on: bool) -> None:
        self.total, self.label, self.on = max(0, int(total)), label, on
        self.done = 0
        self.start = time.monotonic()
        self._drawn = 0.0
        self.suffix = ""

    def update(self, n: int = 1, suffix: str | None = None) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if suffix is not None:
            self.suffix = suffix
        now = time.monotonic()
        if self.on and (now - self._drawn >= 0.1 or self.done >= self.total):
            self._drawn = now
            _draw(self.render())

    def render(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.total:
            filled = int(_WIDTH * self.done / self.total)
            eta = elapsed / self.done * (self.total - self.done) if self.done else None
            tail = f"ETA {_fmt_s(eta)}" if eta is not None and self.done < self.total else _fmt_s(elapsed)
            text = f"  [{'#' * filled}{'-' * (_WIDTH - filled)}] {self.done}/{self.total} {self.label}  {tail}"
        else:
            text = f"  [{self.done}] {self.label}  {_fmt_s(elapsed)}"
        return text + (f"  {self.suffix}" if self.suffix else "")


@contextlib.contextmanager
def bar(total: int, label: str) -> Iterator[Bar]:
    """A bar with an ETA for ``total`` units of ``label``; cleared when the block ends."""
    b = Bar(total, label, active())
    if not b.on:
        yield b
        return
    _draw(b.render())
    stop = threading.Event()

    def tick() -> None:  # the elapsed time / ETA moves even while one step is slow (a first trace)
        while not stop.wait(_TICK_S):
            with _LOCK:
                if _live[0].startswith("  ["):
                    _draw(b.render())

    ticker = threading.Thread(target=tick, name="edgetransfer-bar", daemon=True)
    ticker.start()
    try:
        yield b
    finally:
        stop.set()
        ticker.join()
        _clear()


def iterate(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while a bar counts them (``total`` defaults to ``len(items)``)."""
    if not active():
        yield from items
        return
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    with bar(n, label) as b:
        for item in items:
            yield item
            b.update()


@contextlib.contextmanager
def _info_as_lines() -> Iterator[None]:
    """While a stage runs, our own info records (the doctor's attempts, "evaluating on ...") are
    shown as progress lines, as they happen; with ``-v`` they are already logged: left alone."""
    logger = logging.getLogger("edgetransfer")
    if logger.isEnabledFor(logging.INFO):
        yield
        return

    before = logger.getEffectiveLevel()

    def show(record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            line(f"  {record.getMessage()}")
            return False
        return record.levelno >= before  # what would have passed anyway (-q keeps warnings out)

    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addFilter(show)
    try:
        yield
    finally:
        logger.removeFilter(show)
        logger.setLevel(old)


@contextlib.contextmanager
def stage(name: str, *, done: bool = True, info: bool = False) -> Iterator[None]:
    """Announce a stage with a line (``» name``), tick its elapsed time while it runs (so a stage
    with no count still shows life each second), and say how long it took when it took > 1 s.

    ``info``: show the library's info log records as lines while the stage runs.
    """
    if not active():
        yield
        return
    line(f"» {name}")
    start = time.monotonic()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(_TICK_S):
            with _LOCK:
                if not _live[0] or _live[0].startswith("  … "):  # a bar of an inner step draws itself
                    _draw(f"  … {name}  {_fmt_s(time.monotonic() - start)}")

    ticker = threading.Thread(target=tick, name="edgetransfer-progress", daemon=True)
    ticker.start()
    ok = False
    try:
        with _info_as_lines() if info else contextlib.nullcontext():
            yield
        ok = True
    finally:
        stop.set()
        ticker.join()
        _clear()
        took = time.monotonic() - start
        if ok and done and took > 1.0:
            line(f"  {name}: done in {_fmt_s(took) if took >= 10 else f'{took:.1f}s'}")
