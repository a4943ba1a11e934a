"""Accuracy measured by the device: the held-out images run where the target's runner runs them.

On a ``measure: runner`` target whose runner can run a file on input tensors
(:attr:`edgetransfer.evaluation.runners.Runner.predicts`: ssh, a command with ``{inputs}`` and ``{outputs}``,
adb with ``runner.python``), the held-out images go to the device as ONE ``.npz`` of the file's
input tensors (quantized and laid out as the file takes them, so the device does no
preprocessing of its own), the device's outputs come back (one row per image), and the scores
are the DEVICE's: accuracy, drop and agreement with the float model. Beside them a
:class:`~edgetransfer.records.device.DeviceAccuracy` says how the device's run compares with this
host running the same file: the share of images with the same top-1 class and the largest output
difference. Everywhere else the accuracy is this host's, and :func:`host_label` says which runtime
produced it (and, on a runner that gives latency only, that the device was not asked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics
from .. import targets as targets_lib
from ..errors import RuntimeBackendError
from ..records.device import DeviceAccuracy
from ..records.vocab import MeasureMode
from ..runtime import load_session, runtime_for
from ..runtime import spec as runtime_spec
from ..runtime.device_io import to_tensor
from .heldout import Adapted, predict, to_model_input, to_probabilities


def predicts(target) -> bool:
    """Whether ``target``'s accuracy comes from its device (a runner that returns outputs)."""
    runner = getattr(target, "runner", None)
    return target.measure == MeasureMode.RUNNER and runner is not None and bool(runner.predicts)


def _host_runtime(art, target) -> runtime_spec.RuntimeSpec | None:
    rt = runtime_spec.get(target.runtime)
    return rt if rt.own_accuracy else None


def host_runtime_name(art, target) -> str:
    """The runtime this host scores ``art`` in for ``target``: the target's own (TFLM) or the file's default."""
    rt = _host_runtime(art, target)
    return rt.name if rt is not None else runtime_for(art.path).name


def host_label(art, target) -> str:
    """``litert, host``: who produced a host accuracy figure; on a runner target that gives latency
    only, also that the device did not run the images."""
    label = f"{host_runtime_name(art, target)}, host"
    runner = getattr(target, "runner", None)
    if target.measure == MeasureMode.RUNNER and runner is not None and not runner.predicts:
        label += f"; the {runner.kind} runner gives latency only"
    return label


def host_probabilities(art, target, x: np.ndarray) -> np.ndarray:
    """This host's outputs of ``art`` on ``x`` (the runtime :func:`host_runtime_name` names)."""
    rt = _host_runtime(art, target)
    session = rt.runtime().load(art.path) if rt is not None else load_session(art.path)
    return predict(Adapted(session, art.metadata.get("imported")), x, str(art.path))


def device_probabilities(art, target, x: np.ndarray):
    """``(probabilities, DeviceOutputs)`` of ``art`` run on ``target``'s device over the images ``x``.

    Raises:
        ConfigError: the profile's runner command is not from a file the user named.
        RuntimeBackendError: the runner failed, or the device returned outputs of another shape.
    """
    targets_lib.require_command_allowed(target)
    imported = art.metadata.get("imported") or {}
    spec = load_session(art.path).input_spec  # the file's own input tensor, read here
    tensors = to_tensor(to_model_input(x, imported.get("input_transform")), spec)
    out = target.runner.predict(Path(art.path), tensors, target.threads)
    return to_probabilities(out.y, imported.get("output")), out


def compare(
    art, target, x: np.ndarray, labels: np.ndarray, n_classes: int, host: np.ndarray | None = None
) -> tuple[np.ndarray, DeviceAccuracy]:
    """The device's probabilities for ``x`` and how they compare with this host's run of the same file.

    Args:
        host: this host's probabilities of ``art`` on ``x`` when the caller has them (else computed).

    Raises:
        RuntimeBackendError: the runner failed or returned another number of classes.
    """
    host = host if host is not None else host_probabilities(art, target, x)
    probs, out = device_probabilities(art, target, x)
    if probs.shape != host.shape:
        raise RuntimeBackendError(
            f"the device on target {target.name} returned outputs of shape {probs.shape}; this host's run of "
            f"the same file gives {host.shape}",
            path=art.path,
            fix="the device must write the file's output tensor, one row per input image",
        )
    source = f"{Path(art.path).name} on {target.name}"
    dev = DeviceAccuracy(
        device=out.device,
        runner=out.kind,
        images=int(len(x)),
        accuracy=metrics.scores(probs, labels, n_classes, source).accuracy,
        host_accuracy=metrics.scores(host, labels, n_classes, str(art.path)).accuracy,
        host_runtime=host_runtime_name(art, target),
        agreement=metrics.agreement(probs, host),
        max_abs_diff=round(float(np.max(np.abs(probs - host))), 6),
        runtime=out.runtime,
    )
    return probs, dev
