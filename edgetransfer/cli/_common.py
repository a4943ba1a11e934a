"""Helpers every command shares: the context object and JSON-or-text output."""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click

_STDOUT: contextvars.ContextVar = contextvars.ContextVar("stdout", default=None)
# Set by --json while a command parses, so an error still prints one JSON document on stdout.
JSON_MODE: contextvars.ContextVar[bool] = contextvars.ContextVar("json_mode", default=False)


@contextlib.contextmanager
def library_output_to_stderr() -> Iterator[None]:
    """While a command runs, anything libraries print (Keras download notes, TensorFlow
    chatter) goes to stderr; only :func:`echo` writes to the real stdout, so ``--json``
    output stays one clean document."""
    token = _STDOUT.set(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _STDOUT.reset(token)


@contextlib.contextmanager
def native_stderr_captured(enabled: bool) -> Iterator[None]:
    """Keep what native libraries print straight to file descriptor 2 out of the user's terminal:
    the TFLite converter's ``fully_quantize: 0, inference_type: 6 ...``, LiteRT's ``INFO: Created
    TensorFlow Lite XNNPACK delegate``, TensorFlow's C++ logging. Python's own ``sys.stderr``
    (our warnings, errors, progress) is moved to a duplicate of the real descriptor first, so only
    the native noise is dropped. ``--debug`` shows everything."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    try:
        python_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):  # a test runner's buffer
        python_on_fd2 = False
    saved = os.dup(2)
    py_stderr = sys.stderr
    sink = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finally, after fd 2 is restored)
    os.dup2(sink.fileno(), 2)
    if python_on_fd2:
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), write_through=True)
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow|tf2onnx|onnxruntime)(\.|$)")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        yield
    finally:
        sys.stderr.flush()
        if sys.stderr is not py_stderr:
            sys.stderr.close()
        sys.stderr = py_stderr
        os.dup2(saved, 2)
        os.close(saved)
        sink.close()


def echo(message: str = "") -> None:
    """Write a line of command output to the real stdout."""
    click.echo(message, file=_STDOUT.get() or sys.stdout)


@dataclass(frozen=True)
class Obj:
    """What the top-level group hands each command."""

    debug: bool = False
    verbosity: int = 0


def _json_flag(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        JSON_MODE.set(True)
        from .. import progress

        progress.disable()  # one JSON document: no bars, no stage lines (issue #26)
    return value


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    callback=_json_flag,
    help="Print one JSON document on stdout, nothing else (errors too).",
)


def echo_error_json(message: str, code: int, fix: str | None, kind: str) -> None:
    """The error document ``--json`` promises: ``{"error", "exit_code", "fix", "type"}``."""
    echo(json.dumps({"error": message, "exit_code": code, "fix": fix, "type": kind}, indent=2))


def emit(as_json: bool, payload: Any, text: Callable[[], None]) -> None:
    """Print ``payload`` as JSON, or call ``text`` to render it for people."""
    if as_json:
        echo(json.dumps(payload, indent=2, default=str))
    else:
        text()


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain fixed-width table (no colour, safe for CI logs)."""
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])
