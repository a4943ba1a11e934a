"""The one budget type: limits a file must meet on a target, and the one rule that merges them.

Profiles (``budgets:`` in a target YAML), pipeline files (``check:`` / ``sweep:``) and the
command line all build a :class:`Budget`; :meth:`Budget.merge` lays them over each other in
that order (profile < pipeline file < command line): a later layer's set field wins, an unset
(``None``) one leaves the earlier value. ``None`` means not checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from ..errors import ConfigError
from .base import Record

# The accuracy budget used to pick a "best" file when neither the profile nor the user set one:
# post-training int8 typically costs 0-2 points on ImageNet-scale models (TFLite model
# optimization guide), so 1 point keeps an int8 file that quantized well and drops one that did not.
DEFAULT_PICK_ACCURACY_DROP = 1.0


def _cli(flag: str, help: str) -> dict:
    """A field's command-line option (``cli/_options.py`` makes it): the flag and its help."""
    return {"cli": {"flag": flag, "help": help}}


@dataclass(frozen=True)
class Budget(Record):
    """Limits to enforce on one artifact on one target.

    Attributes:
        latency_p90_ms: p90 latency, ms (the target's own path: host, device runner or estimate).
        latency_ratio: p50 of the file / p50 of a reference file, both measured the same way.
        accuracy_drop: points below the float model on the held-out data (zero allowed).
        size_mb: the file's bytes, in MB (1e6).
        peak_memory_mb: peak resident memory of loading and running the file on the host, MB.
        ram_kb: microcontrollers: the tensor arena the real TFLM interpreter needs, KiB.
        flash_kb: microcontrollers: the model's bytes in flash, KiB.
        full_delegation: the target's accelerator must take the whole graph in one piece, as observed where
            the file ran (:class:`~edgetransfer.records.delegation.Delegation`), else as the static analyzer
            predicts; ``True`` or unset (``check --require-full-delegation``, profile ``full_delegation: true``).
        disagreement: runner targets whose device ran the held-out images: percent of images whose
            top-1 class differs between the device and this host running the same file (zero allowed).
    """

    KIND: ClassVar[str] = "edgetransfer.budget"
    SCHEMA: ClassVar[int] = 1

    latency_p90_ms: float | None = field(
        default=None, metadata=_cli("--max-latency-ms", "p90 latency budget (overrides the profile).")
    )
    latency_ratio: float | None = field(
        default=None, metadata=_cli("--max-latency-ratio", "p50 / p50 of --reference, measured in the same run.")
    )
    accuracy_drop: float | None = field(
        default=None, metadata=_cli("--max-accuracy-drop", "points below the float model (overrides the profile).")
    )
    size_mb: float | None = field(
        default=None, metadata=_cli("--max-size-mb", "file size budget (overrides the profile).")
    )
    peak_memory_mb: float | None = field(
        default=None,
        metadata=_cli(
            "--max-peak-memory-mb",
            "peak resident memory of loading and running the file, in MB (host: measured in a child process).",
        ),
    )
    ram_kb: float | None = field(
        default=None,
        metadata=_cli("--max-ram-kb", "microcontrollers: tensor arena budget in KiB (default: the part's RAM)."),
    )
    flash_kb: float | None = field(
        default=None,
        metadata=_cli("--max-flash-kb", "microcontrollers: model size budget in KiB (default: the part's flash)."),
    )
    full_delegation: bool | None = field(
        default=None,
        metadata={
            "cli": {
                "flag": "--require-full-delegation",
                "unit": "flag",
                "help": "Fail (exit 1) unless the target's accelerator takes the whole graph, as observed where the "
                "file runs (else as predicted), naming the ops that fell back.",
            }
        },
    )
    disagreement: float | None = field(
        default=None,
        metadata=_cli(
            "--max-disagreement",
            "runner targets whose device runs the held-out images: percent of images whose top-1 differs "
            "between the device and this host running the same file (overrides the profile).",
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if f.name in FLAGS:
                if v is not True:
                    raise ConfigError(f"budget {f.name}={v!r} must be true (or left out)", fix=f"set {f.name}: true")
                continue
            zero_ok = f.name in ("accuracy_drop", "disagreement")
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
                or (v == 0 and not zero_ok)
            ):
                need = "zero or more" if zero_ok else "positive"
                raise ConfigError(f"budget {f.name}={v!r} must be a finite, {need} number", fix=f"pass a {need} limit")

    @classmethod
    def merge(cls, *layers: Budget | None) -> Budget:
        """Lay ``layers`` over each other, later ones winning field by field (profile < pipeline < CLI)."""
        out = cls()
        for layer in layers:
            if layer is None:
                continue
            out = replace(
                out, **{f.name: getattr(layer, f.name) for f in fields(layer) if getattr(layer, f.name) is not None}
            )
        return out

    def set_fields(self) -> dict[str, float]:
        """The budgets that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def describe(self) -> str:
        """``p90 <= 8 ms, size <= 4 MB`` (or ``no budgets``)."""
        words = {
            "latency_p90_ms": "p90 <= {:g} ms",
            "latency_ratio": "p50 ratio <= {:g}x",
            "accuracy_drop": "drop <= {:g} points",
            "size_mb": "size <= {:g} MB",
            "peak_memory_mb": "peak memory <= {:g} MB",
            "ram_kb": "RAM <= {:g} KiB",
            "flash_kb": "flash <= {:g} KiB",
            "full_delegation": "fully delegated",
            "disagreement": "host-device disagreement <= {:g}%",
        }
        return ", ".join(words[k].format(v) for k, v in self.set_fields().items()) or "no budgets"


FLAGS = ("full_delegation",)  # budgets that are a requirement (true) rather than a limit
