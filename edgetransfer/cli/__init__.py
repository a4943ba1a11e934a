"""The ``edgetransfer`` command line: parse, call the library, render, exit code.

Exit codes: 0 ok, 1 a budget or accuracy check failed, 2 usage/data/config error,
3 toolchain failure, 4 inconclusive (noise straddles a budget).
"""
from __future__ import annotations

import logging
import sys

import click

from .._version import __version__
from ..errors import EXIT_TOOLCHAIN, EdgeTransferError
from ._common import Obj, library_output_to_stderr

log = logging.getLogger("edgetransfer")


class _Group(click.Group):
    """Maps :class:`EdgeTransferError` to its exit code; no traceback unless ``--debug``."""

    def invoke(self, ctx: click.Context):
        try:
            with library_output_to_stderr():
                return super().invoke(ctx)
        except EdgeTransferError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            click.echo(f"error: {exc.render()}", err=True)
            ctx.exit(exc.exit_code)
        except MemoryError:
            click.echo("error: out of memory; lower --batch-size or --image-size", err=True)
            ctx.exit(EXIT_TOOLCHAIN)


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
    ctx.obj = Obj(debug=debug, verbosity=-1 if quiet else verbose)


def _register() -> None:
    from . import backbones, check, data, export, quickstart, targets, train, validate

    for module in (data, backbones, train, export, validate, check, targets, quickstart):
        module.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgetransfer")
