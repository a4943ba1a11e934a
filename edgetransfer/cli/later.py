"""Commands whose issue has not landed yet: each says which issue brings it.

Remove an entry here when its command lands.
"""
from __future__ import annotations

import click

from ..errors import UnsupportedError

_LATER = {
    "validate": ("Accuracy and latency of exported files on target profiles.", 6),
    "targets": ("List and show target runtime profiles.", 6),
    "check": ("Enforce latency / accuracy / size budgets (CI gate).", 7),
}


def _placeholder(name: str, help_text: str, issue: int) -> click.Command:
    @click.command(name, help=f"{help_text} (not built yet: arrives with issue #{issue}).",
                   short_help=f"{help_text} [issue #{issue}]",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def cmd() -> None:
        raise UnsupportedError(f"`edgetransfer {name}` is not built yet", fix=f"it arrives with issue #{issue}")

    return cmd


def register(cli: click.Group) -> None:
    for name, (help_text, issue) in _LATER.items():
        if name not in cli.commands:
            cli.add_command(_placeholder(name, help_text, issue))
