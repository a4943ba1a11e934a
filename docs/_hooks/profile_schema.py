"""MkDocs hook: the target-profile schema, rendered from the profile's own dataclasses.

A page holding the marker ``<!-- target-profile-schema -->`` gets one table per section of a
profile (the top level, ``device``, ``delegate``, ``memory``, ``budgets`` and the three runners):
each field's YAML key, type, default and help. The help is the ``Attributes:`` section of the
dataclass's Google-style docstring (edgetransfer/targets.py, edgetransfer/records/budget.py,
edgetransfer/evaluation/runners/), so the page cannot drift from the code: a field without help fails the
build (``mkdocs build --strict`` turns the logged error into a failure).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import textwrap
from pathlib import Path

# The checkout being documented comes first on the path, so this hook and mkdocs-click (which imports
# edgetransfer.cli while it converts the command page) read this repository's edgetransfer, not an
# installed copy. Put back before every page: mkdocstrings' loader restores sys.path as it found it.
REPO = Path(__file__).resolve().parents[2]


def _repo_first() -> None:
    if not sys.path or sys.path[0] != str(REPO):
        sys.path.insert(0, str(REPO))


MARKER = "<!-- target-profile-schema -->"
INTERNAL = {"path", "origin", "profile"}  # filled in by the loader, not keys of the YAML file
log = logging.getLogger("mkdocs.hooks.profile_schema")


def _sections():
    _repo_first()
    from edgetransfer import targets
    from edgetransfer.evaluation import runners
    from edgetransfer.records import Budget

    return [
        ("Top level", "", targets.TargetProfile),
        ("device", "device.", targets.Device),
        ("delegate", "delegate.", targets.Delegate),
        ("memory", "memory.", targets.Memory),
        ("budgets", "budgets.", Budget),
        ("runner: kind: ssh", "runner.", runners.SshRunner),
        ("runner: kind: adb", "runner.", runners.AdbRunner),
        ("runner: kind: command", "runner.", runners.CommandRunner),
    ]


def attribute_help(cls) -> dict[str, str]:
    """``{field: help}`` from the ``Attributes:`` section of ``cls``'s docstring; an entry may name
    several fields (``a / b: text``) and continue on more-indented lines."""
    doc = textwrap.dedent("\n".join((cls.__doc__ or "").split("\n")[1:]))
    block = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, re.M)
    if not block:
        return {}
    out: dict[str, str] = {}
    current: list[str] = []
    for line in textwrap.dedent(block.group(1)).splitlines():
        entry = re.match(r"^([A-Za-z_][\w /]*?):\s+(.*)$", line)
        if entry and not line.startswith(" "):
            current = [n.strip() for n in entry.group(1).split("/")]
            for name in current:
                out[name] = entry.group(2).strip()
        elif line.strip() and current:
            for name in current:
                out[name] += " " + line.strip()
    return out


def _type(annotation: str) -> str:
    words = {
        "runners.Runner | None": "mapping (a runner section, below)",
        "Device | None": "mapping (`device`, below)",
        "Delegate | None": "mapping (`delegate`, below)",
        "Memory | None": "mapping (`memory`, below)",
        "Budget": "mapping (`budgets`, below)",
        "tuple[str, ...]": "list of strings",
        "dict": "mapping",
    }
    return words.get(annotation, annotation.replace(" | None", " or empty"))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
        if value is None or value == ():
            return "empty"
        if dataclasses.is_dataclass(value):
            return "none set"
        return f"`{value}`"
    if f.default_factory is not dataclasses.MISSING:
        return "empty"
    return "**required**"


def render() -> str:
    parts = []
    for title, prefix, cls in _sections():
        helps = attribute_help(cls)
        rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
        kind = getattr(cls, "kind", None)  # a runner's kind is a class constant, not a field
        if isinstance(kind, str):
            rows.append(f"| `runner.kind` | str | **required** | `{kind}` (a bare string as `runner:` is `command`) |")
        for f in dataclasses.fields(cls):
            if f.name in INTERNAL:
                continue
            if f.name not in helps:
                log.error("%s.%s has no help: add it to the Attributes: of its docstring", cls.__name__, f.name)
                helps[f.name] = ""
            text = re.sub(r"``(.+?)``", r"`\1`", helps[f.name]).replace("|", "\\|")
            rows.append(f"| `{prefix}{f.name}` | {_type(str(f.type))} | {_default(f)} | {text} |")
        source = f"`{cls.__module__}.{cls.__qualname__}`"
        parts.append(f"### {title}\n\nFrom {source}.\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def on_pre_build(config) -> None:
    _repo_first()


def on_page_markdown(markdown: str, page, config, files) -> str:
    _repo_first()
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
