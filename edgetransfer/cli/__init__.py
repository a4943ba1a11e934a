"""The ``edgetransfer`` command line: parse, call the library, render, exit code.

Exit codes: 0 ok, 1 a budget or accuracy check failed, 2 usage/data/config error,
3 toolchain failure, 4 inconclusive (noise straddles a budget), 70 internal error (a bug),
130 interrupted.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from pathlib import Path

import click

from .. import progress
from .._version import __version__
from ..errors import EXIT_INTERRUPTED, EXIT_TOOLCHAIN, EXIT_USAGE, EdgeTransferError
from ._common import JSON_MODE, Obj, echo_error_json, library_output_to_stderr, native_stderr_captured

log = logging.getLogger("edgetransfer")
# An exception the toolkit did not expect: its own code, so CI never reads a bug as "a budget
# failed" (1). 70 is EX_SOFTWARE, "an internal software error" (sysexits.h).
EXIT_BUG = 70
# click's own control flow (usage errors, --help, ctx.exit, Ctrl-C at a prompt): click handles these.
_CLICK_FLOW = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)
# errno -> (exit code, problem, fix) for OSErrors that are the machine's state, not a bug.
_DISK_ERRORS = {
    errno.ENOSPC: (EXIT_TOOLCHAIN, "no space left on the device", "free some disk space, or write to another folder"),
    errno.EROFS: (EXIT_USAGE, "read-only file system", "write to a folder you can write to"),
    errno.EACCES: (EXIT_USAGE, "permission denied", "check the path, or use a folder you can read and write"),
}


class _Group(click.Group):
    """Maps :class:`EdgeTransferError` to its exit code; no traceback unless ``--debug``."""

    def invoke(self, ctx: click.Context):
        token = JSON_MODE.set(False)
        progress_token = progress.enable()
        try:
            return self._invoke_mapped(ctx)
        except _CLICK_FLOW:
            raise
        except Exception as exc:  # not one of ours, not the machine's state: a bug (exit 70, not 1)
            if ctx.obj is not None and ctx.obj.debug:
                raise
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
            self._fail(
                ctx,
                f"internal error, a bug in edgetransfer: {type(exc).__name__}: {exc}{where}",
                EXIT_BUG,
                "rerun with --debug and report the traceback; this exit code (70) never means a budget failed",
                "InternalError",
            )
        finally:
            JSON_MODE.reset(token)
            progress.restore(progress_token)

    def _invoke_mapped(self, ctx: click.Context):
        try:
            with native_stderr_captured(not ctx.params.get("debug")), library_output_to_stderr():
                return super().invoke(ctx)
        except EdgeTransferError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            now = getattr(exc, "exit_at_once", False)
            self._fail(ctx, exc.render(), exc.exit_code, exc.fix, type(exc).__name__, now)
        except OSError as exc:  # a full or read-only disk deep inside a library (h5py, a converter)
            if (ctx.obj is not None and ctx.obj.debug) or exc.errno not in _DISK_ERRORS:
                raise
            code, what, fix = _DISK_ERRORS[exc.errno]
            where = f"{exc.filename}: " if exc.filename else ""
            self._fail(ctx, f"{where}{what} ({exc.strerror or exc})", code, fix, type(exc).__name__)
        except MemoryError:
            self._fail(ctx, "out of memory", EXIT_TOOLCHAIN, "lower --batch-size or --image-size", "MemoryError")
        except KeyboardInterrupt:
            # 130 = 128 + SIGINT, the shell convention; checkpoints written so far are kept.
            self._fail(
                ctx,
                "interrupted",
                EXIT_INTERRUPTED,
                "rerun the same command (train: add --resume)",
                "KeyboardInterrupt",
            )

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int, fix: str | None, kind: str, now: bool = False) -> None:
        if fix and "\n  fix: " not in message:  # Ctrl-C, out of memory: the fix is not in the message yet
            message = f"{message}\n  fix: {fix}"
        click.echo(f"error: {message}", err=True)
        if JSON_MODE.get():
            echo_error_json(message.split("\n  fix: ")[0], code, fix, kind)
        if now:  # native state that would crash the normal exit (errors.DiskFullError)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="edgetransfer")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """Transfer-learn a lightweight image model and ship it to a device.

    \b
    The path:  data -> backbones -> train -> export -> validate -> check
    New here?  edgetransfer quickstart
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setFormatter(_Formatter("%(levelname)s %(name)s: %(message)s"))
            handler.setStream(_AboveProgress())
    ctx.obj = Obj(debug=debug, verbosity=-1 if quiet else verbose)
    if quiet:
        progress.disable()  # -q: only errors on stderr, no stage lines or bars either
    if not debug:
        sys.unraisablehook = _quiet_unraisable
        sys.excepthook = _quiet_h5py_dealloc


class _Formatter(logging.Formatter):
    """Our own warnings as ``warning: ...`` lines, like ``error: ...`` (issue #26); a message that
    already shouts ``WARNING`` as is; other libraries' records and our info/debug as before."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name.split(".")[0] == "edgetransfer" and record.levelno == logging.WARNING:
            msg = record.getMessage()
            return msg if msg.startswith("WARNING") else f"warning: {msg}"
        return super().format(record)


class _AboveProgress:
    """The log handler's stream: a record is written above a live progress bar, not into it."""

    def write(self, text: str) -> None:
        progress.write_above(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _quiet_unraisable(info) -> None:
    """Errors Python can only print, e.g. h5py failing to close a file on a full disk: a log line
    (``-vv``), not a traceback; the error that matters reaches the user through the exit path."""
    log.debug("ignored in %r: %s", info.object, info.exc_value)


def _quiet_h5py_dealloc(kind, value, tb) -> None:
    """h5py objects that fail to close (a full disk) print their error through ``sys.excepthook``
    from Cython's ``__dealloc__`` while Keras unwinds: a log line (``-vv``), not a traceback each."""
    frames = traceback.extract_tb(tb)
    if frames and frames[-1].filename.endswith("h5py/_objects.pyx"):
        log.debug("h5py failed to release an object: %s", value)
        return
    sys.__excepthook__(kind, value, tb)


def _register() -> None:
    from . import backbones, check, data, export, importer, quant, quickstart, sweep, targets, train, validate

    for module in (data, backbones, train, importer, export, quant, validate, check, targets, quickstart, sweep):
        module.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgetransfer")
