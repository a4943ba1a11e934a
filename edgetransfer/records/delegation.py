"""Delegation as a runtime did it: which accelerator took how much of a graph, and what fell back.

A :class:`Delegation` is observed from the runtime that loaded the file (LiteRT's delegate nodes and
``CompiledModel.is_fully_accelerated()``, ONNX Runtime's execution provider per node, OpenVINO's
runtime graph) or read from a device's log (``benchmark_model``'s "Replacing N out of M node(s)"
line). The static analyzers' figure (:mod:`edgetransfer.compat`) stays the prediction where nothing
ran; a measurement carrying both says where they differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .base import Record

OBSERVED, DEVICE_LOG = "observed", "device log"


@dataclass(frozen=True)
class Delegation(Record):
    """One file on one runtime: its accelerator's share of the graph.

    Attributes:
        runtime: the registry name of the runtime that ran it (``litert``, ``onnxruntime``, ``openvino``).
        accelerator: what was asked to take the graph (``XNNPACK``, ``CUDAExecutionProvider``, ``CPU``).
        api: the runtime's API that ran (LiteRT: ``CompiledModel`` or ``Interpreter``).
        nodes_total / nodes_accelerated: the graph's nodes, and those the accelerator ran.
        partitions: how many pieces the accelerator's part came in (1: one piece).
        fallback_ops: the op type of every node left outside the accelerator, in graph order.
        fully_accelerated: the runtime's own word where it gives one (``CompiledModel.is_fully_accelerated()``).
        float_ops / float_op_types: in an int8 or int16x8 file, the nodes that still computed in float
            (outside the quantize/dequantize at the boundary) and their types; ``None`` where not counted.
        source: ``observed`` (loaded and inspected here) or ``device log`` (read from a device's output).
        note: what the figure cannot say (a runtime that names no nodes).
    """

    KIND: ClassVar[str] = "edgetransfer.delegation"
    SCHEMA: ClassVar[int] = 1
    DERIVED: ClassVar[tuple[str, ...]] = ("full",)

    runtime: str
    accelerator: str
    nodes_total: int
    nodes_accelerated: int
    partitions: int
    fallback_ops: tuple[str, ...] = ()
    api: str = ""
    fully_accelerated: bool | None = None
    float_ops: int | None = None
    float_op_types: tuple[str, ...] = ()
    source: str = OBSERVED
    note: str = ""

    @property
    def full(self) -> bool:
        """The accelerator took every node in one piece (and the runtime, where it says, agrees)."""
        if self.nodes_total == 0 and self.fully_accelerated is not None:  # a device tool's word without counts
            return self.fully_accelerated
        counted = self.nodes_total > 0 and self.nodes_accelerated == self.nodes_total and self.partitions <= 1
        return counted and self.fully_accelerated is not False

    def derived(self) -> dict:
        return {"full": self.full}

    def describe(self) -> str:
        """``XNNPACK took 9/11 nodes in 1 partition; fell back: QUANTIZE x2`` (for messages and findings)."""
        if self.nodes_total == 0 and self.fully_accelerated is not None:
            word = "fully accelerated" if self.fully_accelerated else "NOT fully accelerated (ops not named)"
            return f"{self.accelerator}: {word} ({self.source})"
        if self.full:
            return f"{self.accelerator} took all {self.nodes_total} nodes ({self.source})"
        counts: dict[str, int] = {}
        for op in self.fallback_ops:
            counts[op] = counts.get(op, 0) + 1
        fell = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.items()) or "none named"
        said = " (the runtime reports it not fully accelerated)" if self.fully_accelerated is False else ""
        return (
            f"{self.accelerator} took {self.nodes_accelerated}/{self.nodes_total} nodes in {self.partitions} "
            f"partition(s){said}; fell back to the CPU: {fell} ({self.source})"
        )


# tensorflow/lite/core/subgraph.cc (Subgraph::ReplaceNodeSubsetsWithDelegateKernels) logs, on every
# delegate it applies: "Replacing 64 out of 66 node(s) with delegate (TfLiteXNNPackDelegate) node,
# yielding 3 partitions for the whole graph." (older: "... yielding 3 partitions."). The count is of the
# node subsets PartitionGraphIntoIndependentNodeSubsets made, delegated and not: 1 when the delegate took all.
REPLACING = re.compile(
    r"Replacing (?P<n>\d+) out of (?P<m>\d+) node\(s\) with delegate \((?P<name>[^)]*)\) node, yielding "
    r"(?P<k>\d+) partitions?"
)


def from_log(text: str, runtime: str = "litert") -> Delegation | None:
    """The delegation a LiteRT tool's log reports (``benchmark_model``, an app's logcat), or None without the line.

    Several delegates (XNNPACK applied after a GPU delegate's leftovers): the first is the accelerator asked for.
    """
    m = REPLACING.search(text)
    if m is None:
        return None
    n, total, parts = int(m["n"]), int(m["m"]), int(m["k"])
    return Delegation(
        runtime=runtime,
        accelerator=m["name"],
        nodes_total=total,
        nodes_accelerated=n,
        partitions=parts if n else 0,
        source=DEVICE_LOG,
        note="" if n == total else "the log counts the nodes left out but does not name them",
    )
