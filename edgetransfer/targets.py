"""Target runtime profiles: ``targets/*.yaml``, validated on load.

A profile holds what a device is (runtime, delegate or provider, threads, what it can run)
and the constants the latency estimate needs, with the sources they come from. Device
knowledge lives in these files, not in ``if`` chains.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import isa as isa_lib
from . import strict_yaml
from .errors import ConfigError, UnsupportedError
from .evaluation import runners
from .exporter import formats
from .exporter.formats import INTEGER_PRECISIONS, PRECISIONS
from .io import check_component
from .records import Budget
from .runtime import spec as runtime_spec
from .strict_yaml import want_int, want_number, want_str, want_str_list

MEASURE_MODES = ("host", "runner", "estimate")
OP_KINDS = ("conv", "depthwise", "dense", "elementwise", "pool", "other")


@dataclass(frozen=True)
class Device:
    """Constants of the cost model (per-op MACs and bytes against these rates).

    Attributes:
        peak_gmacs: effective GMAC/s at full utilisation, per precision (``{fp32: 80, int8: 160}``).
        memory_gbps: sustained memory bandwidth, GB/s: an op is bound by its bytes when they take longer.
        efficiency: the share of the peak each op kind reaches (``conv``, ``depthwise``, ``dense``,
            ``elementwise``, ``pool``, ``other``); a kind left out runs at 1.0.
        per_op_us: dispatch cost added per op, microseconds.
        fixed_ms: invoke overhead added per inference, ms.
    """

    peak_gmacs: dict  # precision -> effective GMAC/s at full utilisation
    memory_gbps: float
    efficiency: dict = field(default_factory=dict)  # op kind -> fraction of peak
    per_op_us: float = 0.0  # dispatch cost per op
    fixed_ms: float = 0.0  # invoke overhead per inference


@dataclass(frozen=True)
class Delegate:
    """Which ops an accelerator takes and how it splits a graph.

    Attributes:
        name: the delegate or accelerator (``gpu``, ``edgetpu``, ``nnapi``), named in the output.
        supported_ops: the op types it takes (TFLite builtin or ONNX op names); the others fall back.
        precisions: the precisions it runs; a file of another precision runs on the CPU.
        partitioning: ``segments``: every run of supported ops is its own partition (GPU delegate,
            NNAPI); ``first_segment``: only the ops before the first unsupported one (Edge TPU compiler).
    """

    name: str
    supported_ops: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    # "segments": every run of supported ops is its own partition (GPU delegate, NNAPI);
    # "first_segment": only the ops before the first unsupported one (Edge TPU compiler).
    partitioning: str = "segments"


@dataclass(frozen=True)
class Memory:
    """A microcontroller's memories in KiB (``runtime: tflm`` profiles).

    The TFLM tensor arena must be one contiguous block: ``arena_max_kb`` is the largest
    contiguous SRAM region (defaults to ``sram_kb``); ``psram_kb`` is external RAM.

    Attributes:
        sram_kb: on-chip SRAM, KiB: the default ``ram_kb`` budget.
        flash_kb: flash, KiB: the default ``flash_kb`` budget (the model's bytes must fit).
        psram_kb: external PSRAM, KiB (0: none).
        arena_max_kb: the largest contiguous SRAM region the tensor arena may take, KiB (default ``sram_kb``).
    """

    sram_kb: float
    flash_kb: float
    psram_kb: float = 0.0
    arena_max_kb: float | None = None


@dataclass(frozen=True)
class TargetProfile:
    """A device as a YAML profile (``targets/*.yaml``): what it runs, how its latency is had, its budgets.

    Attributes:
        name: the profile's name, as ``--target NAME`` takes it; one plain file name (it becomes a
            folder under a sweep's ``picks/``).
        description: one line, shown by ``edgetransfer targets list``.
        runtime: the runtime that runs the files, a name of the runtime registry (``litert``,
            ``onnxruntime``, ``openvino``, ``tflm``).
        formats: the file formats the device runs (``tflite``, ``onnx``).
        precisions: the precisions it runs (``fp32``, ``fp16``, ``dynamic``, ``int8``, ``int16x8``).
        measure: where latency comes from: ``host`` (timed on this machine), ``runner`` (timed on the
            device by ``runner``) or ``estimate`` (the per-op cost model with ``device``'s constants).
        provider: the runtime's execution provider or delegate (``cpu``, ``gpu``, ``qnn``, ``coreml``,
            ``tensorrt``, ...).
        threads: threads the runtime runs with; empty: the runtime's default (host targets: every core).
        input_dtype: the input type the device takes (``any``, ``uint8``), as the profile's sources say.
        runner: how to reach the device when ``measure: runner``: an ``ssh``, ``adb`` or ``command``
            section (below), each with its own ``timeout_s``.
        device: the cost model's constants, needed when ``measure: estimate``.
        delegate: the accelerator's op list and partitioning, for the delegate compatibility report.
        budgets: the profile's budgets for ``check``, merged field by field under the pipeline file's
            and the command line's (profile < pipeline < command line); ``latency_ratio`` is refused here.
        clock_mhz: microcontrollers (``runtime: tflm``): the core clock the latency estimate assumes, MHz.
        memory: microcontrollers: SRAM, flash and PSRAM, needed by ``runtime: tflm``.
        sources: where the constants come from (datasheets, published benchmarks): one citation a line.
        integer_only: the accelerator computes in integers only (Edge TPU, NPUs, microcontroller int8
            kernels): a file that computes in float anywhere (``dynamic``: int8 weights, float
            activations) is refused on it.
        isa: what the CPU can do: instruction-set extensions (``avx2``, ``avx512_vnni``, ``neon``,
            ``dotprod``, ...), or ``[host]`` for this machine's; empty when the profile does not say.
    """

    name: str
    description: str
    runtime: str
    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    measure: str = "estimate"
    provider: str = "cpu"
    threads: int | None = None
    input_dtype: str = "any"
    runner: runners.Runner | None = None  # ssh / adb / command, each with its own timeout
    device: Device | None = None
    delegate: Delegate | None = None
    budgets: Budget = Budget()
    clock_mhz: float | None = None  # tflm: the core clock the latency estimate assumes
    memory: Memory | None = None  # tflm: SRAM / flash / PSRAM
    sources: tuple[str, ...] = ()
    path: str = ""
    origin: str = "path"  # path | targets-dir | cwd | shipped: where it was found (see search_path)
    # The accelerator computes in integers only (Edge TPU, NPUs, microcontroller int8 kernels): a file that
    # computes in float anywhere (dynamic range: int8 weights, float activations) cannot run on it.
    integer_only: bool = False
    # What the CPU can do: instruction-set extensions (avx2, avx512_vnni, neon, dotprod, ...) or [host]
    # for this machine's (edgetransfer.isa); () when the profile does not say.
    isa: tuple[str, ...] = ()

    @property
    def measures_memory(self) -> bool:
        """Whether the target's runtime measures the model's memory (a microcontroller's RAM and flash)."""
        return runtime_spec.MEMORY in runtime_spec.get(self.runtime).measures

    def require_command_allowed(self) -> None:
        """A profile's runner runs a command on this machine: only from a file the user named."""
        if self.origin not in ORIGINS_ALLOWED_TO_RUN:
            raise ConfigError(
                f"target {self.name} has a runner command, but its profile was found in the "
                f"{'current folder' if self.origin == 'cwd' else 'package'} ({self.path}), "
                "not in a file you pointed at",
                path=self.path,
                fix=f"pass --targets-dir {Path(self.path).parent} or --target {self.path} to allow it",
            )

    def can_run(self, fmt: str, precision: str) -> str | None:
        """``None`` if this target runs ``fmt`` at ``precision``, else why not."""
        if self.integer_only and precision not in INTEGER_PRECISIONS:
            return f"{self.name} is integer-only (integer_only: true) and a {precision} file computes in float" + (
                " (dynamic range: int8 weights, float activations)" if precision == "dynamic" else ""
            )
        if fmt not in self.formats:
            return f"{self.name} runs {'/'.join(self.formats)} files, not {fmt}"
        if precision not in self.precisions:
            return f"{self.name} runs {'/'.join(self.precisions)} models, not {precision}"
        return None


_SECTIONS = {"device": Device, "delegate": Delegate, "budgets": Budget, "memory": Memory}


def _strict(cls, raw: dict, path: Path, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"'{where}' must be a mapping", path=path, fix="see targets/host-cpu.yaml for the layout")
    known = {f.name for f in fields(cls)} - {"path", "origin"}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown key '{where}{key}'", path=path, fix=f"{hint}known keys: {', '.join(sorted(known))}"
            )
    return raw


def _typed_section(key: str, sub: dict, path: Path) -> dict:
    """Types and ranges of a section's fields, checked here so a typo is exit 2 naming the key."""
    out = dict(sub)
    for k, v in sub.items():
        name = f"{key}.{k}"
        if v is None:
            continue
        if k in ("peak_gmacs", "efficiency"):
            if not isinstance(v, dict):
                raise ConfigError(f"key '{name}' must be a mapping", path=path, fix="see targets/pixel4-cpu.yaml")
            out[k] = {str(kk): want_number(vv, f"{name}.{kk}", path, min=0) for kk, vv in v.items()}
        elif k in ("supported_ops", "precisions"):
            out[k] = want_str_list(v, name, path, choices=PRECISIONS if k == "precisions" else None)
        elif k in ("name", "partitioning"):
            out[k] = want_str(v, name, path)
        elif k == "full_delegation":  # a requirement, not a limit (records.budget.FLAGS)
            if v is not True:
                raise ConfigError(f"key '{name}' must be true (or left out)", path=path, fix=f"set {name}: true")
        else:
            out[k] = want_number(v, name, path, min=0)
    return out


def parse(raw: dict, path: Path, origin: str = "path") -> TargetProfile:
    """Build a profile from a YAML mapping; every unknown key or bad value names the file."""
    raw = dict(_strict(TargetProfile, raw, path, ""))
    for key in ("name", "description", "runtime", "formats", "precisions"):
        if key not in raw:
            raise ConfigError(f"missing key '{key}'", path=path, fix="see targets/host-cpu.yaml for the layout")
    for key, cls in _SECTIONS.items():
        if raw.get(key) is not None:
            sub = _typed_section(key, dict(_strict(cls, raw[key], path, f"{key}.")), path)
            try:
                raw[key] = cls(**sub)
            except TypeError as exc:  # a required field of the section is missing
                raise ConfigError(
                    f"section '{key}' is incomplete ({exc})", path=path, fix="see the shipped profiles for every field"
                ) from None
    for key in ("name", "description", "runtime", "measure", "provider", "input_dtype"):
        if key in raw:
            raw[key] = want_str(raw[key], key, path)
    raw["formats"] = want_str_list(raw["formats"], "formats", path, choices=formats.file_formats())
    raw["precisions"] = want_str_list(raw["precisions"], "precisions", path, choices=PRECISIONS)
    raw["sources"] = want_str_list(raw.get("sources") or [], "sources", path)
    if raw.get("threads") is not None:
        raw["threads"] = want_int(raw["threads"], "threads", path, min=1)
    if raw.get("clock_mhz") is not None:
        raw["clock_mhz"] = want_number(raw["clock_mhz"], "clock_mhz", path, min=0)
    if raw.get("runner") is not None:
        raw["runner"] = runners.parse(raw["runner"], path)
    if "integer_only" in raw and not isinstance(raw["integer_only"], bool):
        raise ConfigError("key 'integer_only' must be true or false", path=path, fix="set integer_only: true")
    if raw.get("isa") is not None:
        raw["isa"] = isa_lib.parse(want_str_list(raw["isa"], "isa", path), path)
    prof = TargetProfile(**raw, path=str(path), origin=origin)
    _check_values(prof, path)
    return prof


MAX_THREADS = 1024  # more than any device has cores; runtimes take a C int (ORT, LiteRT)


def _check_values(p: TargetProfile, path: Path) -> None:
    try:  # the name becomes a folder (sweep picks/<name>/): one plain path component
        check_component(p.name, "name")
    except ConfigError as exc:
        raise ConfigError(exc.problem, path=path, fix="give the profile a plain name, e.g. my-board-cpu") from None
    if p.runtime not in runtime_spec.names():
        raise ConfigError(
            f"unknown runtime {p.runtime!r}", path=path, fix=f"use one of {', '.join(runtime_spec.names())}"
        )
    if p.budgets.latency_ratio is not None:
        raise ConfigError(
            "budgets.latency_ratio is not a profile budget (it needs a second file)",
            path=path,
            fix="remove it; pass --max-latency-ratio with --reference to `check`",
        )
    rt = runtime_spec.get(p.runtime)
    problems = [
        (
            p.threads is None or p.threads <= MAX_THREADS,
            f"threads {p.threads} is more than {MAX_THREADS}",
            "set threads to the device's core count (or leave it out for the runtime's default)",
        ),
        (p.measure in MEASURE_MODES, f"unknown measure mode {p.measure!r}", f"use one of {', '.join(MEASURE_MODES)}"),
        (
            set(p.precisions) <= set(PRECISIONS),
            f"unknown precision in {list(p.precisions)}",
            f"use {', '.join(PRECISIONS)}",
        ),
        (
            not p.integer_only or set(p.precisions) <= set(INTEGER_PRECISIONS),
            f"integer_only: true, yet precisions lists {[x for x in p.precisions if x not in INTEGER_PRECISIONS]}",
            f"list only {', '.join(INTEGER_PRECISIONS)}, or drop integer_only",
        ),
        (
            p.measure != "runner" or p.runner is not None,
            "measure: runner needs a 'runner' section",
            "add runner: {kind: ssh, host: user@device} (or kind: adb / command)",
        ),
        (
            p.measure != "estimate" or p.device is not None,
            "measure: estimate needs a 'device' section",
            "add device constants",
        ),
        (
            runtime_spec.MEMORY not in rt.measures or p.memory is not None,
            f"runtime: {p.runtime} needs a 'memory' section (it measures the model's memory on the part)",
            "add memory: {sram_kb: ..., flash_kb: ..., psram_kb: ...}",
        ),
        (
            not rt.formats or set(p.formats) <= set(rt.formats),
            f"runtime: {p.runtime} runs {'/'.join(rt.formats)} files only",
            f"set formats: [{', '.join(rt.formats)}]",
        ),
        (
            not rt.precisions or set(p.precisions) <= set(rt.precisions),
            f"runtime: {p.runtime} runs {'/'.join(rt.precisions)} models only",
            f"set precisions: [{', '.join(rt.precisions)}]",
        ),
    ]
    for ok, problem, fix in problems:
        if not ok:
            raise ConfigError(problem, path=path, fix=fix)


SHIPPED = Path(__file__).resolve().parent / "profiles"  # package data (a link to the top-level targets/)
ORIGINS_ALLOWED_TO_RUN = ("path", "targets-dir")
log = logging.getLogger("edgetransfer")


def search_path(extra: str | Path | None = None) -> list[tuple[Path, str]]:
    """``(folder, origin)``: ``--targets-dir``, then ``./targets``, then the shipped profiles."""
    dirs = [(Path(extra), "targets-dir")] if extra else []
    cwd = Path.cwd() / "targets"
    if cwd.resolve() != SHIPPED.resolve():
        dirs.append((cwd, "cwd"))
    return [*dirs, (SHIPPED, "shipped")]


def _read_yaml(path: Path):
    """Strict YAML: duplicate keys, alias bombs, deep nesting and bad UTF-8 are errors naming the file."""
    return strict_yaml.load_file(path)


def load_file(path: str | Path, origin: str = "path") -> TargetProfile:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            "target profile not found", path=path, fix="check the path, or use a name from `targets list`"
        )
    raw = _read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("a target profile must be a YAML mapping", path=path, fix="see targets/host-cpu.yaml")
    return parse(raw or {}, path, origin)


def scan(targets_dir: str | Path | None = None) -> tuple[dict[str, TargetProfile], list[ConfigError]]:
    """Every profile on the search path (an earlier folder wins on a name clash, with a
    warning), and the files that failed to load: one bad file does not hide the others."""
    out: dict[str, TargetProfile] = {}
    errors: list[ConfigError] = []
    for folder, origin in search_path(targets_dir):
        for f in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                prof = load_file(f, origin)
            except ConfigError as exc:
                errors.append(exc)
                continue
            if prof.name in out:
                if out[prof.name].origin == "cwd" and origin == "shipped":
                    log.warning(
                        "WARNING: target %s: using %s from the current folder, not the shipped %s",
                        prof.name,
                        out[prof.name].path,
                        prof.path,
                    )
                continue
            out[prof.name] = prof
    return out, errors


def all_profiles(targets_dir: str | Path | None = None) -> dict[str, TargetProfile]:
    """Every profile that loads; files that do not are logged as warnings."""
    profiles, errors = scan(targets_dir)
    for exc in errors:
        log.warning("WARNING: skipped a target profile: %s", exc.render().replace("\n", " "))
    return profiles


def is_path(name: str) -> bool:
    """Whether a target reference names a YAML file rather than a profile by name."""
    return name.endswith((".yaml", ".yml")) or "/" in name


def get(name: str, targets_dir: str | Path | None = None) -> TargetProfile:
    """A profile by name (or a path to a YAML file)."""
    if is_path(name):
        return load_file(name, "path")
    profiles, errors = scan(targets_dir)
    if name not in profiles:
        broken = [e for e in errors if Path(str(e.path)).stem == name]
        if broken:
            raise broken[0]
        close = difflib.get_close_matches(name, profiles, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        where = ", ".join(str(d) for d, _ in search_path(targets_dir))
        raise ConfigError(
            f"unknown target {name!r}",
            fix=f"{hint}known targets: {', '.join(profiles) or '(none found in ' + where + ')'}",
        )
    return profiles[name]


def require_command_allowed(target: TargetProfile) -> None:
    """A profile's runner runs a command on this machine: only from a file the user named."""
    target.require_command_allowed()


def require_runnable(target: TargetProfile, fmt: str, precision: str, artifact: str) -> None:
    why = target.can_run(fmt, precision)
    if why:
        raise UnsupportedError(
            f"{artifact} cannot run on target {target.name}: {why}",
            fix=f"export a {'/'.join(target.precisions)} {'/'.join(target.formats)} file for it",
        )
