"""The evaluation stage: every figure of an exported file on a target, measured once.

- :mod:`.evaluator`: :func:`measure` (one file on one target, what a :class:`MeasureRequest` asks, as a
  :class:`~edgetransfer.records.measure.Measurement`).
- :mod:`.accuracy`: the :class:`Evaluator`, the one thing that runs a model on the held-out data (the
  float reference computed once); handed to validate, check, the quantization doctor, the diagnosis
  and the importer. :mod:`.heldout`: the held-out images and predictions it reads.
- :mod:`.timing`: latency on the target's own path (host runtimes, device runner, estimate);
  :mod:`.latency` the timing loop and the cost model; :mod:`.runners` the device runners.
- :mod:`.memory`, :mod:`.compat`, :mod:`.graphops`: peak memory, delegate compatibility, the graph's ops.
- :mod:`.speed`: per-op profiles, tuned runtime settings, bf16 execution. :mod:`.stats`: the CI decision.

The ``validate`` orchestration over files and targets is a flow (:mod:`edgetransfer.flows.validate`).
"""

from .accuracy import Evaluator
from .evaluator import FLOAT, MeasureRequest, load_report, measure, save
from .heldout import HeldOut, held_out, predict, probe_batch, reference_probs
from .timing import measure_latency

__all__ = [
    "FLOAT",
    "Evaluator",
    "MeasureRequest",
    "HeldOut",
    "held_out",
    "load_report",
    "measure",
    "measure_latency",
    "predict",
    "probe_batch",
    "reference_probs",
    "save",
]
