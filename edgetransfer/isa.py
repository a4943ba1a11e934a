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
