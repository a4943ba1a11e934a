"""The command runner: any command line the profile names, printing bench JSON."""

from __future__ import annotations

import os
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .adb import safe_model_alias
from .base import (
    _TEMPLATE_FIELDS,
    DEFAULT_TIMEOUT_S,
    RunnerResult,
    _bench_json,
    _Call,
    _check_common,
    _fail,
    _latency,
    _tail,
)


@dataclass(frozen=True)
class CommandRunner:
    """A local command template (``{model}``: a link to the model under a name no shell misreads,
    the real path in ``$EDGETRANSFER_MODEL``; ``{threads}``) whose
    stdout ends with ``python -m edgetransfer.runtime bench --json`` output."""

    template: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: str = field(default="", compare=False)
    kind: ClassVar[str] = "command"
    op_profile: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_common(self, self.profile)
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        except ValueError as exc:
            raise _fail(
                f"runner template {self.template!r} is not a valid template ({exc})",
                self.profile,
                "write {model} and {threads}; double other braces: {{ }}",
            ) from None
        if not self.template.strip() or names - _TEMPLATE_FIELDS:
            raise _fail(
                f"runner template {self.template!r} uses {sorted(names - _TEMPLATE_FIELDS)}",
                self.profile,
                "use only {model} (the local model path) and {threads}",
            )

    def argv(self, model: Path, threads: int | None) -> list[str]:
        """The template's words with ``{model}`` as given; :meth:`run` passes a safe alias instead.

        ``model`` must be a path no shell can misread (see :func:`safe_model_alias`).
        """
        return shlex.split(self.template.format(model=shlex.quote(str(model)), threads=threads or ""))

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Run the template on ``model``; its last stdout line is the bench JSON.

        ``{model}`` becomes a link to the model under a fresh temporary folder, a name of
        ``[A-Za-z0-9_./-]`` only, so no shell the template calls (``sh -c '... {model}'``,
        ``ssh host '... {model}'``) can read a command out of the file's name. The real path is
        in the environment variable ``EDGETRANSFER_MODEL``, for commands that want it.

        Raises:
            RuntimeBackendError: missing executable, non-zero exit, no JSON, timeout.
        """
        with safe_model_alias(model) as alias:
            argv = self.argv(alias, threads)
            call = _Call("command", argv[0] if argv else "?", self.profile, self.timeout_s)
            res = call.exec(argv, env={**os.environ, "EDGETRANSFER_MODEL": str(Path(model).resolve())})
        if res.returncode != 0:
            raise call.error(
                argv,
                f"exited {res.returncode}: {_tail(res.stderr or res.stdout)}",
                "run the runner command by hand to see why",
            )
        doc = _bench_json(call, argv, res.stdout)
        host = doc.get("host") or {}
        device = " / ".join(str(host[k]) for k in ("cpu", "os") if host.get(k)) or argv[0]
        return RunnerResult(_latency(doc, device), device, argv, self.kind)
