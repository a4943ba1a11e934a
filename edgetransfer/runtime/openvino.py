"""OpenVINO for ONNX files on the CPU: LATENCY hint, fp32 inference, a set thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import _lazy
from ..errors import ConfigError, RuntimeBackendError
from .base import require_file, require_finite, require_input_shape, to_nchw
from .onnxrt import input_spec

DEVICE = "CPU"
# OpenVINO's CPU plugin defaults INFERENCE_PRECISION_HINT to bf16 on CPUs with AVX512-BF16 or AMX
# (docs.openvino.ai, "CPU Device", Inference Precision): ask for f32 so it computes what the other
# runtimes compute. Quantized (QDQ) graphs still run their int8 parts in int8.
PRECISION = "f32"
# The CPU plugin properties a target's settings may set (docs.openvino.ai, "CPU Device", Supported Properties).
SETTING_KEYS = (
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
    "SCHEDULING_CORE_TYPE",
    "INFERENCE_PRECISION_HINT",
)
_DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8"}


def compile_config(threads: int | None, settings: dict | None = None) -> dict:
    """The CPU plugin's config: the LATENCY hint and f32 unless ``settings`` (OpenVINO property names:
    ``PERFORMANCE_HINT``, ``NUM_STREAMS``, ``ENABLE_CPU_PINNING``, ``INFERENCE_PRECISION_HINT``) say otherwise."""
    unknown = sorted(set(settings or {}) - set(SETTING_KEYS))
    if unknown:
        raise ConfigError(f"OpenVINO settings {unknown} are not ones it takes", fix=f"use {', '.join(SETTING_KEYS)}")
    config: dict = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION, **(settings or {})}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _ov():
    return _lazy.require("openvino", extra="openvino")


_CORE: list = []


def core():
    """The process's one ``openvino.Core``, kept until exit (the shape OpenVINO's docs recommend).

    One per session was a crash: the CPU plugin of every Core installs its own alternate signal
    stack on the thread that loads it and, when that Core is freed, puts back the one it found.
    Cores freed in any order but the reverse of their creation (two sessions, then the garbage
    collector) leave the thread's ``sigaltstack`` on a stack already unmapped; the next signal with
    an ``SA_ONSTACK`` handler (every Python handler, faulthandler's too) then kills the process
    with SIGSEGV: a Ctrl-C after validating on OpenVINO exited 139 instead of 130, with no
    traceback. Seen with openvino 2026.4 (``create_plugin_engine`` in libopenvino_intel_cpu_plugin);
    tests/unit/runtime/test_openvino_signals.py reproduces it in a child process."""
    if not _CORE:
        _CORE.append(_ov().Core())
    return _CORE[0]


class _Session:
    """A compiled OpenVINO model with one infer request; ``settings`` are read back from the plugin."""

    def __init__(self, compiled, settings: dict, path: str | Path = ""):
        self.path = str(path)
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        port = compiled.inputs[0]
        shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
        dtype = _DTYPES.get(port.get_element_type().get_type_name(), "float32")
        self.input_spec = input_spec(shape, dtype)
        self.outputs = len(compiled.outputs)  # run() reads the first: an importer refuses more
        self.settings = settings

    def run(self, batch: np.ndarray) -> np.ndarray:
        require_input_shape(batch, self.input_spec, self.path)
        if self.input_spec.shape[0] == 1 and len(batch) > 1:  # a static batch-1 graph: one image at a time
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(len(batch))])
        x = to_nchw(batch, self.input_spec).astype(self.input_spec.dtype)
        self.request.infer({0: x})
        return require_finite(np.asarray(self.request.get_output_tensor(0).data, dtype=np.float32).copy(), self.path)


class OpenVINO:
    """OpenVINO runtime (CPU plugin) for ``.onnx`` files."""

    name = "openvino"
    formats: tuple[str, ...] = ("onnx",)

    def version(self) -> str:
        return f"openvino {_ov().get_version()}"

    def load(self, path: str | Path, threads: int | None = None, settings: dict | None = None) -> _Session:
        """Read and compile ``path`` for the CPU with ``threads`` inference threads and ``settings``
        (:func:`compile_config`: the LATENCY hint and f32 unless they say otherwise).

        Raises:
            RuntimeBackendError: OpenVINO cannot read or compile the model.
        """
        path = require_file(path)
        config = compile_config(threads, settings)
        ov_core = core()
        try:
            compiled = ov_core.compile_model(ov_core.read_model(str(path)), DEVICE, config)
        except Exception as exc:  # OpenVINO raises RuntimeError / its own exception types
            raise RuntimeBackendError(
                f"OpenVINO could not compile the model for {DEVICE} ({exc})",
                path=path,
                fix="re-export it; check it is an .onnx file OpenVINO supports",
            ) from None
        settings = {"runtime": "openvino", "device": DEVICE}
        keys = ("PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "NUM_STREAMS", *config)
        for key in dict.fromkeys(keys):
            value = compiled.get_property(key)  # an element Type prints as "<Type: 'float32'>": use "f32"
            settings[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        return _Session(compiled, settings, path)
