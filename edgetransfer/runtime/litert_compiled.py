"""LiteRT's ``CompiledModel`` API (``ai_edge_litert`` 2.x): the LiteRT runtime's path where it is installed.

LiteRT 2.x documents ``CompiledModel`` with hardware accelerators (CPU through XNNPACK, GPU, NPU
through a vendor dispatch library) and ``is_fully_accelerated()``; the ``Interpreter`` is the
older API (ai.google.dev/edge/litert, "LiteRT CompiledModel API"). :func:`load` compiles a file for
the CPU accelerator with its kernel mode (``CpuKernelMode.XNNPACK`` or ``BUILTIN``, the same switch the
Interpreter's op resolver is) and the thread count; the session says which API ran
(:attr:`CompiledSession.settings`) and whether the accelerator took the whole graph.

``CompiledModel`` reports tensor dtypes and shapes but not their quantization, so the input's and
output's scale and zero point are read once from an Interpreter that is never allocated (no
delegate applied, no arena: a flatbuffer parse).
"""

from __future__ import annotations

import atexit
import importlib
import os
import re
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import RuntimeBackendError
from .base import InputSpec, quantize_input, require_finite, require_input_shape
from .safe import check_input_spec

MODULE = "ai_edge_litert.compiled_model"
API_COMPILED, API_INTERPRETER = "CompiledModel", "Interpreter"
# What LiteRT's environment writes to fd 2 on every CompiledModel: accelerator registration, and the
# Intel OpenVINO compiler plugin that the wheel ships and that fails to load without libopenvino.
NOISE = re.compile(
    rb"^(INFO: \[[a-z_]+\.cc:\d+\].*|WARNING: \[compiler_plugin\.cc:\d+\] Failed to load plugin.*|"
    rb"WARNING: \[npu_registry\.cc:\d+\] NPU accelerator could not be loaded.*|\xe2\x94\x94 Could not "
    rb"load shared library .*LiteRtCompilerPlugin.*|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)\s*$"
)


_ENV: list = []  # one LiteRT Environment per process, shared by every CompiledModel (LiteRT's own default
# creates one per model and logs its accelerator registry on each creation and destruction)


def _environment(mod):
    if not _ENV:
        _ENV.append(
            mod.Environment.create(options=mod.EnvironmentOptions(runtime_path=str(Path(mod.__file__).parent)))
        )
        atexit.register(_quiet_exit)
    return _ENV[0]


def _quiet_exit() -> None:
    """LiteRT logs "DestroyAccelerator" lines to fd 2 when the environment is freed, after every atexit hook:
    point fd 2 at /dev/null for the interpreter's last moments (``EDGETRANSFER_NATIVE_LOGS=1`` keeps them)."""
    if os.environ.get("EDGETRANSFER_NATIVE_LOGS"):
        return
    try:
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    except (OSError, ValueError):
        pass


def available() -> bool:
    """Whether ``ai_edge_litert`` has ``CompiledModel`` (2.x); tflite_runtime and tf.lite do not."""
    try:
        return hasattr(importlib.import_module(MODULE), "CompiledModel")
    except Exception:  # noqa: BLE001 - ImportError, or a binary built against another NumPy
        return False


def _quantization(interp_module, path: Path) -> tuple[dict, dict]:
    """The input's and output's details (with quantization) from an Interpreter never allocated."""
    kind = interp_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # no delegate: a parse only
    interp = interp_module.Interpreter(model_path=str(path), experimental_op_resolver_type=kind)
    return interp.get_input_details()[0], interp.get_output_details()[0]


class CompiledSession:
    """A ``.tflite`` compiled for LiteRT's CPU accelerator. Thread-safe (one lock around write, run, read).

    Attributes:
        fully_accelerated: ``CompiledModel.is_fully_accelerated()``: the accelerator took every op.
        settings: what ran: ``api``, ``accelerator``, ``kernel_mode``, ``threads``, ``fully_accelerated``.
    """

    def __init__(self, model, inp: dict, out: dict, path: Path, settings: dict):
        self.model = model
        self.path = path
        self._lock = threading.Lock()
        self._inputs = model.create_input_buffers(0)
        self._outputs = model.create_output_buffers(0)
        self._out = out
        self._out_count = int(np.prod(out["shape"]))
        self._out_dtype = np.dtype(out["dtype"])
        scale, zp = inp["quantization"]
        shape = tuple(int(d) for d in inp["shape"])
        spec = InputSpec(shape, np.dtype(inp["dtype"]).name, "NHWC", float(scale) if scale else None, int(zp))
        self.input_spec = check_input_spec(spec, path)
        self.fully_accelerated = bool(model.is_fully_accelerated())
        self.settings = {**settings, "fully_accelerated": self.fully_accelerated}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Class scores ``[N, classes]`` (float32) for a ``[N, size, size, 3]`` batch in [0, 255], one image
        at a time (the compiled graph has the file's static batch of 1)."""
        batch = np.asarray(batch)
        require_input_shape(batch, self.input_spec, self.path)
        if len(batch) > 1:
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(len(batch))])
        try:
            x = np.ascontiguousarray(quantize_input(batch, self.input_spec))
            with self._lock:
                self._inputs[0].write(x)
                self.model.run_by_index(0, self._inputs, self._outputs)
                out = np.array(self._outputs[0].read(self._out_count, self._out_dtype)).reshape(self._out["shape"])
        except (ValueError, RuntimeError, TypeError) as exc:
            raise RuntimeBackendError(
                f"LiteRT (CompiledModel) failed to run the model ({exc})",
                path=self.path,
                fix="check the batch matches the model input; re-export the model",
            ) from None
        scale, zp = self._out["quantization"]
        if scale:
            out = (out.astype(np.float32) - zp) * scale
        return require_finite(out.astype(np.float32), self.path)


def compilable(interp_module, path: Path) -> tuple[dict, dict] | None:
    """The input/output details when the file suits the CompiledModel path (one input, static batch 1), else None."""
    inp, out = _quantization(interp_module, path)
    signature = inp.get("shape_signature", inp["shape"])
    return (inp, out) if len(signature) == 4 and int(signature[0]) == 1 else None


def load(path: Path, threads: int | None, resolver: str, inp: dict, out: dict) -> CompiledSession:
    """Compile ``path`` for the CPU accelerator with ``threads`` threads and the ``resolver``'s kernels.

    Raises:
        RuntimeBackendError: LiteRT could not compile the file.
    """
    mod = importlib.import_module(MODULE)
    opts_mod = importlib.import_module("ai_edge_litert.options")
    mode = getattr(importlib.import_module("ai_edge_litert.cpu_kernel_mode").CpuKernelMode, resolver.upper())
    hw = importlib.import_module("ai_edge_litert.hardware_accelerator").HardwareAccelerator.CPU
    cpu = opts_mod.CpuOptions(num_threads=int(threads or 0), kernel_mode=mode)  # 0: LiteRT's default
    try:
        options = opts_mod.Options(hw, cpu_options=cpu)
        model = mod.CompiledModel.from_file(str(path), environment=_environment(mod), options=options)
    except (RuntimeError, ValueError) as exc:
        raise RuntimeBackendError(
            f"LiteRT could not compile the model for its CPU accelerator ({exc})",
            path=path,
            fix="re-export it; check it is a .tflite file",
        ) from None
    settings = {
        "runtime": "litert",
        "api": API_COMPILED,
        "accelerator": "cpu",
        "kernel_mode": resolver,
        "threads": threads or "default",
    }
    session = CompiledSession(model, inp, out, path, settings)
    # The first run of a graph with ops left to the CPU's builtin kernels creates a second LiteRT environment,
    # which logs its accelerator registry: run once here, inside the caller's quiet_native_stderr block.
    session.run(np.zeros((1, *session.input_spec.shape[1:]), np.float32))
    return session
