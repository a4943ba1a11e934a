"""What a CPU can do: the instruction-set extensions int8 kernels depend on (issue #39, item 6).

A CPU target profile says ``isa: [avx2]``, ``[avx2, avx512_vnni]``, ``[neon, dotprod]`` or ``[host]``
(this machine's, read from ``/proc/cpuinfo`` or the platform). The one consequence modelled here:
ONNX Runtime's U8S8 int8 kernels on x86 without VNNI multiply uint8 activations by int8 weights with
``vpmaddubsw``, which adds adjacent pairs of products into int16 with saturation; with VNNI
(``vpdpbusd``) the products accumulate in int32. ONNX Runtime's quantization guide ("Quantize ONNX
models", section "When and why do I need to try U8U8?") names the remedy: 7-bit weights
(``reduce_range``) or U8U8. With weights in [-64, 64] a pair is at most 2 x 255 x 64 = 32640, under
int16's 32767: no saturation on any ISA.
"""

from __future__ import annotations

import difflib
import functools
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import ConfigError

HOST = "host"
# Extension names as Linux's /proc/cpuinfo spells them (x86 "flags"; arm "Features" mapped below).
KNOWN = (
    "sse4_1",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "neon",
    "dotprod",
    "i8mm",
    "sve",
)
X86 = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products accumulated in int32 on x86
# arm64 /proc/cpuinfo "Features" -> our names (Linux arch/arm64/kernel/cpuinfo.c hwcap strings)
_ARM = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve"}


def parse(names: Sequence[str], path: str | Path = "") -> tuple[str, ...]:
    """A profile's ``isa`` list, ``host`` expanded to this machine's; an unknown name is an error naming it."""
    out: list[str] = []
    for name in names:
        if name == HOST:
            out += detect()
            continue
        if name not in KNOWN:
            close = difflib.get_close_matches(name, KNOWN, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown instruction-set extension {name!r} in 'isa'",
                path=path or None,
                fix=f"{hint}use {', '.join(KNOWN)} or host",
            )
        out.append(name)
    return tuple(dict.fromkeys(out))


@functools.cache
def detect() -> tuple[str, ...]:
    """This machine's extensions among :data:`KNOWN` (Linux ``/proc/cpuinfo``; Apple silicon: NEON, dot product)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= {_ARM.get(f, f) for f in value.split()}
    if not flags and platform.system() == "Darwin" and platform.machine() == "arm64":
        flags = {"neon", "dotprod"}
    return tuple(f for f in KNOWN if f in flags)


def is_x86(isa: Iterable[str]) -> bool:
    return any(f in X86 for f in isa)


def u8s8_saturates(isa: Iterable[str]) -> bool:
    """Whether ONNX Runtime's U8S8 kernels on this ISA add u8 x s8 product pairs in int16 (x86 without VNNI)."""
    isa = tuple(isa)
    return is_x86(isa) and not any(f in VNNI for f in isa)


def describe(isa: Iterable[str]) -> str:
    isa = tuple(isa)
    return "+".join(isa) if isa else "unknown ISA"


# The int8 writer options that keep U8S8 pairs out of int16 saturation (exporter/formats/onnx.py OPTIONS):
# uint8 weights (U8U8, 8-bit weights kept; measured on digits Lite0 96 px: the same drop as the VNNI file, 0.55
# points, where 7-bit weights lost 1.39) first, then 7-bit weights (reduce_range, the faster U8S8 kernel).
SAFE_OPTIONS = ("u8u8", "reduce_range")


def saturating_targets(targets: Sequence) -> list[str]:
    """Names of the target profiles whose CPU saturates U8S8 pairs (x86 without VNNI, per their ``isa``)."""
    return [t.name for t in targets if getattr(t, "isa", ()) and u8s8_saturates(t.isa)]


def for_targets(offered: Sequence[str], precision: str, options: Sequence[str], targets: Sequence) -> tuple[str, ...]:
    """``options`` plus uint8 weights (or 7-bit ones) where the format offers them, the file is int8 and a target's
    CPU would saturate its U8S8 pairs; unchanged when the recipe already avoids them."""
    safe = [o for o in SAFE_OPTIONS if o in offered]
    needed = precision == "int8" and bool(safe) and bool(saturating_targets(targets))
    if not needed or any(o in options for o in SAFE_OPTIONS):
        return tuple(options)
    return (*options, safe[0])


def quantized_for(offered: Sequence[str], precision: str, options: Sequence[str]) -> str:
    """The CPUs an int8 file's integer kernels were made for (in its manifest); "" where that does not apply."""
    if precision != "int8" or not any(o in offered for o in SAFE_OPTIONS):
        return ""
    if "u8u8" in options:
        return "any (uint8 weights, U8U8: no int16 saturation on x86 without VNNI)"
    if "reduce_range" in options:
        return "any (7-bit weights: no U8S8 saturation on x86 without VNNI)"
    return "vnni (8-bit int8 weights: x86 with VNNI, ARM; U8S8 pairs may saturate on x86 without VNNI)"


def saturates_on(manifest_recipe: dict, target_isa: Sequence[str]) -> bool:
    """Whether a file whose manifest says it was made for VNNI would run saturating U8S8 pairs on ``target_isa``."""
    return str(manifest_recipe.get("quantized_for", "")).startswith("vnni") and u8s8_saturates(target_isa)
