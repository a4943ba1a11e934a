"""Shared by the stand-in ``ssh``, ``scp``, ``adb`` and ``benchmark_model`` (tests only).

The "device" is a local folder, ``$EDGETRANSFER_STANDIN_ROOT``: a device path ``/tmp/x`` is
``$EDGETRANSFER_STANDIN_ROOT/tmp/x``. Switches, all environment variables:

- ``EDGETRANSFER_STANDIN_FAULT``: ``unreachable`` (every call fails as with the host down),
  ``hang`` (the measuring command sleeps), ``garbage`` (it prints noise and exits 0),
  ``crash`` (benchmark_model dies of SIGSEGV), ``nomodule`` (the device's Python lacks edgetransfer).
- ``EDGETRANSFER_STANDIN_PYTHON``: the interpreter that stands for the device's ``python3``.
- ``EDGETRANSFER_STANDIN_SERIAL`` / ``EDGETRANSFER_STANDIN_MODEL``: the adb device's serial and model.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

FAULT = os.environ.get("EDGETRANSFER_STANDIN_FAULT", "")
HANG_S = 600


def root() -> Path:
    value = os.environ.get("EDGETRANSFER_STANDIN_ROOT")
    if not value:
        sys.exit(f"{Path(sys.argv[0]).name} (stand-in): set EDGETRANSFER_STANDIN_ROOT to the device folder")
    return Path(value)


def device_path(path: str) -> Path:
    """A device path in the local folder."""
    return root() / path.lstrip("/")


def python() -> str:
    return os.environ.get("EDGETRANSFER_STANDIN_PYTHON", sys.executable)


def map_command(command: str, pythons: tuple[str, ...] = ("python3", "python")) -> list[str]:
    """A device shell command line -> a local argv: absolute paths into the folder, python3 -> ours."""
    argv = []
    for tok in shlex.split(command):
        if tok in pythons:
            argv.append(python())
        elif tok.startswith("/"):
            argv.append(str(device_path(tok)))
        elif tok.startswith("--graph=/"):
            argv.append("--graph=" + str(device_path(tok[len("--graph=") :])))
        else:
            argv.append(tok)
    return argv


def measuring(command: str) -> bool:
    return " bench " in f" {command} " or "benchmark_model" in command


def fault_in_measurement() -> None:
    """Act out ``hang`` or ``garbage`` in place of the measuring command."""
    if FAULT == "hang":
        time.sleep(HANG_S)
    if FAULT == "garbage":
        print("Segmentation fault? no: just some noise\n\x1b[31m<<garbage>>\x1b[0m")
        sys.exit(0)


def run(argv: list[str], *, shell_name: str) -> int:
    """Run a mapped argv the way a device shell would: 127 and a message when it is missing."""
    if argv and argv[0].startswith(str(root())) and not os.access(argv[0], os.X_OK):
        print(f"{shell_name}: {argv[0][len(str(root())) :]}: inaccessible or not found", file=sys.stderr)
        return 127
    try:
        code = subprocess.run(argv, cwd=root(), check=False).returncode
        return 128 - code if code < 0 else code  # a shell reports death by signal N as 128 + N
    except FileNotFoundError:
        print(f"{shell_name}: {argv[0]}: not found", file=sys.stderr)
        return 127
