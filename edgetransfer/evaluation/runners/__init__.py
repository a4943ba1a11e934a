"""Device runners: a target's typed way to time a file on the device itself.

One module per kind (:mod:`.ssh`, :mod:`.adb`, :mod:`.command`), the shared call and result in
:mod:`.base`; :func:`parse` reads a profile's ``runner:`` section into one of them.
"""

from __future__ import annotations

import difflib
from dataclasses import MISSING, fields
from pathlib import Path

from .adb import AdbRunner, parse_benchmark_model
from .base import DEFAULT_TIMEOUT_S, DeviceOutputs, Runner, RunnerResult, _fail
from .command import CommandRunner
from .ssh import SshRunner

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AdbRunner",
    "CommandRunner",
    "DeviceOutputs",
    "Runner",
    "RunnerResult",
    "SshRunner",
    "parse",
    "parse_benchmark_model",
]


KINDS: dict[str, type] = {"ssh": SshRunner, "adb": AdbRunner, "command": CommandRunner}


def _type_ok(value, hint: str) -> bool:
    """``value`` against a field's annotation string (``str``, ``int | None``, ``float``, ``bool``)."""
    if value is None:
        return "None" in hint
    if isinstance(value, bool):
        return "bool" in hint
    if isinstance(value, int):
        return "int" in hint or "float" in hint
    if isinstance(value, float):
        return "float" in hint
    return isinstance(value, str) and "str" in hint


def parse(raw, path: str | Path) -> Runner:
    """The runner a profile's ``runner:`` value describes (a string is a ``command`` template).

    Args:
        raw: the YAML value: a string, or a mapping with ``kind`` (ssh, adb, command) and its fields.
        path: the profile file, named in errors.

    Raises:
        ConfigError: an unknown kind or key, a missing or mistyped field, a bad value.
    """
    profile = str(path)
    if isinstance(raw, str):
        return CommandRunner(template=raw, profile=profile)
    if not isinstance(raw, dict):
        raise _fail(
            "'runner' must be a command string or a mapping with 'kind'",
            profile,
            "e.g. runner: {kind: ssh, host: pi@raspberrypi.local}",
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(f"runner.kind {kind!r} is not a runner kind", profile, f"use one of {', '.join(KINDS)}")
    cls = KINDS[kind]
    hints = {f.name: str(f.type) for f in fields(cls) if f.name != "profile"}
    args = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in hints:
            close = difflib.get_close_matches(str(key), hints, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise _fail(
                f"unknown key 'runner.{key}' for kind {kind}", profile, f"{hint}known keys: kind, {', '.join(hints)}"
            )
        if not _type_ok(value, hints[key]):
            raise _fail(
                f"runner.{key} must be {hints[key]}, not {type(value).__name__} ({value!r})",
                profile,
                f"fix runner.{key}",
            )
        args[key] = float(value) if key == "timeout_s" else value
    missing = [
        f.name for f in fields(cls) if f.name not in args and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise _fail(f"runner of kind {kind} needs '{missing[0]}'", profile, f"add runner.{missing[0]}")
    return cls(**args, profile=profile)
