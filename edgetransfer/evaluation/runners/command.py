"""The command runner: any command line the profile names, printing bench JSON (and, with ``{inputs}`` and
``{outputs}``, writing the device's outputs)."""

from __future__ import annotations

import json
import os
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from .adb import safe_model_alias
from .base import (
    _IO_FIELDS,
    _TEMPLATE_FIELDS,
    DEFAULT_TIMEOUT_S,
    DeviceOutputs,
    RunnerResult,
    _bench_json,
    _Call,
    _check_common,
    _fail,
    _latency,
    _outputs,
    _tail,
)


@dataclass(frozen=True)
class CommandRunner:
    """A local command template whose stdout ends with ``python -m edgetransfer.runtime bench --json`` output.

    Fields: ``{model}`` (a link to the model under a name no shell misreads, the real path in
    ``$EDGETRANSFER_MODEL``), ``{threads}``, and, together, ``{inputs}`` and ``{outputs}``: an
    ``.npz`` of input tensors (key ``x``) the command hands the device, and the ``.npz`` it must
    write back (key ``y``, one row per image). With those the device's accuracy is measured too;
    a latency run sends one random image.

    Attributes:
        template: the command line, with ``{model}``, ``{threads}`` and optionally ``{inputs}`` and
            ``{outputs}``; its last stdout line is the bench JSON. A bare string as ``runner:`` is this template.
        timeout_s: seconds the command may take before it counts as hung (exit 3).
    """

    template: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    profile: str = field(default="", compare=False)
    kind: ClassVar[str] = "command"
    op_profile: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_common(self, self.profile)
        try:
            names = self._fields()
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
                "use only {model} (the local model path), {threads}, and {inputs} with {outputs}",
            )
        if len(names & _IO_FIELDS) == 1:
            raise _fail(
                f"runner template {self.template!r} uses {sorted(names & _IO_FIELDS)[0]} alone",
                self.profile,
                "use {inputs} and {outputs} together: the .npz the device reads and the one it writes",
            )

    def _fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}

    @property
    def predicts(self) -> str:
        return "the runner command's {inputs} and {outputs}" if self._fields() >= _IO_FIELDS else ""

    def argv(self, model: Path, threads: int | None, inputs: Path | None = None, outputs: Path | None = None):
        """The template's words with ``{model}`` as given; :meth:`run` passes a safe alias instead.

        ``model`` (and ``inputs``/``outputs``) must be paths no shell can misread (see :func:`safe_model_alias`).
        """
        q = {k: shlex.quote(str(v)) if v is not None else "" for k, v in (("inputs", inputs), ("outputs", outputs))}
        return shlex.split(self.template.format(model=shlex.quote(str(model)), threads=threads or "", **q))

    def _exec(self, model: Path, threads: int | None, x: np.ndarray | None):
        """Run the template once; ``x`` (or one random image where the template takes inputs) as ``{inputs}``.
        Returns ``(call, argv, completed process, outputs file or None)`` with the outputs read if any."""
        from ...runtime.device_io import INPUTS_KEY, write_npz

        with safe_model_alias(model) as alias:
            io_paths: tuple[Path | None, Path | None] = (None, None)
            if self.predicts:
                inputs, outputs = alias.parent / "inputs.npz", alias.parent / "outputs.npz"
                write_npz(inputs, **{INPUTS_KEY: x if x is not None else _probe_tensor(model)})
                io_paths = (inputs, outputs)
            argv = self.argv(alias, threads, *io_paths)
            call = _Call("command", argv[0] if argv else "?", self.profile, self.timeout_s)
            res = call.exec(argv, env={**os.environ, "EDGETRANSFER_MODEL": str(Path(model).resolve())})
            if res.returncode != 0:
                raise call.error(
                    argv,
                    f"exited {res.returncode}: {_tail(res.stderr or res.stdout)}",
                    "run the runner command by hand to see why",
                )
            got = _outputs(call, argv, io_paths[1], len(x)) if x is not None and io_paths[1] else None
        return call, argv, res, got

    def run(self, model: Path, threads: int | None = None, profile: bool = False) -> RunnerResult:
        """Run the template on ``model``; its last stdout line is the bench JSON.

        ``{model}`` becomes a link to the model under a fresh temporary folder, a name of
        ``[A-Za-z0-9_./-]`` only, so no shell the template calls (``sh -c '... {model}'``,
        ``ssh host '... {model}'``) can read a command out of the file's name. The real path is
        in the environment variable ``EDGETRANSFER_MODEL``, for commands that want it.

        Raises:
            RuntimeBackendError: missing executable, non-zero exit, no JSON, timeout.
        """
        call, argv, res, _ = self._exec(model, threads, None)
        doc = _bench_json(call, argv, res.stdout)
        device = _command_device(doc, argv)
        return RunnerResult(_latency(doc, device), device, argv, self.kind)

    def predict(self, model: Path, x: np.ndarray, threads: int | None = None) -> DeviceOutputs:
        """The command's outputs for the input tensors ``x`` (``{inputs}`` -> ``{outputs}``).

        Raises:
            ConfigError: the template has no ``{inputs}``/``{outputs}``.
            RuntimeBackendError: non-zero exit, no or an unusable output file, timeout.
        """
        if not self.predicts:
            raise _fail(
                f"runner template {self.template!r} has no {{inputs}} and {{outputs}}: it measures latency only",
                self.profile,
                "add {inputs} (the .npz the device reads, key x) and {outputs} (the .npz it writes, key y)",
            )
        _, argv, res, got = self._exec(model, threads, x)
        assert got is not None  # x was given and the template takes outputs
        try:
            device = _command_device(json.loads(res.stdout.strip().splitlines()[-1]), argv)
        except (IndexError, ValueError, AttributeError):
            device = argv[0]
        return DeviceOutputs(got[0], got[1], device, argv, self.kind)


def _command_device(doc, argv: list[str]) -> str:
    """The device a command names in its JSON's ``host`` (cpu / os), else the command itself."""
    host = doc.get("host") if isinstance(doc, dict) else None
    host = host if isinstance(host, dict) else {}
    return " / ".join(str(host[k]) for k in ("cpu", "os") if host.get(k)) or argv[0]


def _probe_tensor(model: Path) -> np.ndarray:
    """One random image as ``model``'s input tensor (this host's runtime reads its input spec)."""
    from ...runtime import load_session
    from ...runtime.device_io import to_tensor

    spec = load_session(model).input_spec
    return to_tensor(np.random.default_rng(0).uniform(0, 255, (1, spec.size, spec.size, 3)), spec)
