"""The evaluation stage: every figure of an exported file on a target, measured once.

- :mod:`.evaluator`: :func:`measure` (one file on one target, as a
  :class:`~edgetransfer.records.measure.Measurement`) and the best file per target.
- :mod:`.accuracy` / :mod:`.heldout`: the held-out data, predictions, scores against the float model.
- :mod:`.timing`: latency on the target's own path (host runtimes, device runner, estimate);
  :mod:`.latency` the timing loop and the cost model; :mod:`.runners` the device runners.
- :mod:`.memory`, :mod:`.compat`, :mod:`.graphops`: peak memory, delegate compatibility, the graph's ops.
- :mod:`.speed`: per-op profiles, tuned runtime settings, bf16 execution. :mod:`.stats`: the CI decision.

The ``validate`` orchestration over files and targets is a flow (:mod:`edgetransfer.flows.validate`).
"""

from .evaluator import FLOAT, best_per_target, load_report, measure, save
from .heldout import HeldOut, held_out, predict, probe_batch, reference_probs
from .timing import measure_latency

__all__ = [
    "FLOAT",
    "HeldOut",
    "best_per_target",
    "held_out",
    "load_report",
    "measure",
    "measure_latency",
    "predict",
    "probe_batch",
    "reference_probs",
    "save",
]
