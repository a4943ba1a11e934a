"""What a device said about a file: its own accuracy run, or a benchmark result file it wrote.

- :class:`DeviceAccuracy`: the held-out images run ON the device by a target's runner (one
  ``.npz`` in, one ``.npz`` out), compared with this host's run of the same file. A
  :class:`~edgetransfer.records.measure.Measurement` on a runner target carries it, and its
  ``accuracy`` is then the device's figure (the one an accuracy budget judges).
- :class:`DeviceResult`: a benchmark tool's output measured elsewhere (LiteRT's
  ``benchmark_litert_model --result_json``, ``benchmark_model``'s log, ``onnxruntime_perf_test``'s
  log), parsed by :mod:`edgetransfer.device_results` for ``check --device-result``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import Record
from .latency import Latency


@dataclass(frozen=True)
class DeviceAccuracy(Record):
    """The held-out images run on the device, against this host's run of the same file.

    Attributes:
        device: the device's identity as its runner read it (``uname -a``, the phone's model, the command).
        runner: how it was reached (``ssh``, ``adb``, ``command``).
        runtime: what the device reports it ran the file with (its runtime and kernels), ``""`` if it says nothing.
        images: held-out images run (one output row each).
        accuracy: the device's top-1 accuracy on them.
        host_accuracy: this host's top-1 accuracy on the same images with the same file.
        host_runtime: the host runtime that produced ``host_accuracy`` (``litert``, ``onnxruntime``...).
        agreement: share of images (0..1) whose top-1 class is the same on the device and the host.
        max_abs_diff: the largest absolute difference between a device output and the host's (same scale
            as the file's output: probabilities for exported classifiers).
    """

    KIND: ClassVar[str] = "edgetransfer.device_accuracy"
    SCHEMA: ClassVar[int] = 1
    DERIVED: ClassVar[tuple[str, ...]] = ("disagreement_pct", "label")

    device: str
    runner: str
    images: int
    accuracy: float
    host_accuracy: float
    host_runtime: str
    agreement: float
    max_abs_diff: float
    runtime: str = ""

    @property
    def disagreement_pct(self) -> float:
        """Percent of images whose top-1 differs between the device and the host (``--max-disagreement``)."""
        return round(100.0 * (1.0 - self.agreement), 4)

    @property
    def label(self) -> str:
        """``device: raspberrypi over ssh``: who produced :attr:`accuracy` (validate's accuracy column)."""
        # uname -a (ssh): its host name; a command's "cpu / os": the cpu part; else as the runner read it
        words = self.device.split()
        name = words[1] if self.device.startswith("Linux ") and len(words) > 1 else self.device.split(" / ")[0]
        return f"device: {name[:60] + ('...' if len(name) > 60 else '')} over {self.runner}"

    def derived(self) -> dict:
        return {"disagreement_pct": self.disagreement_pct, "label": self.label}


@dataclass(frozen=True)
class DeviceResult(Record):
    """A benchmark tool's result measured elsewhere, read strictly (untrusted input).

    Attributes:
        tool: ``benchmark_litert_model``, ``benchmark_model`` or ``onnxruntime_perf_test``.
        source: the result file read.
        model: the model file the result names (its path as the tool printed it), ``""`` if it names none.
        model_bytes: the model's size as the result gives it, converted to bytes, or ``None``.
        size_tolerance_bytes: how far ``model_bytes`` can be from the true size from rounding alone (the tools
            print MB with 2-4 decimals).
        device: the device it ran on (the tool's own line, or ``--device-name``).
        latency: the figure (provenance ``measured``, ``host.device`` the device).
        fully_accelerated: ``benchmark_litert_model``'s ``is_fully_accelerated()``, ``None`` where not reported.
        accelerators: the accelerators the tool was asked for (``CPU``, ``GPU``, ``NPU``).
        op_profile: ``benchmark_model``'s per-op table rows ``(node type, avg ms, share %)`` when present.
    """

    KIND: ClassVar[str] = "edgetransfer.device_result"
    SCHEMA: ClassVar[int] = 1

    tool: str
    source: str
    model: str
    model_bytes: int | None
    device: str
    latency: Latency
    size_tolerance_bytes: int = 0
    fully_accelerated: bool | None = None
    accelerators: tuple[str, ...] = ()
    op_profile: tuple[tuple[str, float, float], ...] = field(default=())
