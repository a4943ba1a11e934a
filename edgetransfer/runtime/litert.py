"""LiteRT (TFLite): ``ai_edge_litert``, else ``tflite_runtime``, else ``tf.lite``."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError, RuntimeBackendError
from . import litert_compiled
from .base import InputSpec, quantize_input, require_file, require_finite, require_input_shape
from .safe import check_input_spec

_CANDIDATES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")


def interpreter_module():
    """The first interpreter module that imports (tflite_runtime 2.14 fails under NumPy 2)."""
    errors = []
    for name in _CANDIDATES:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # ImportError, or a binary built against another NumPy
            errors.append(f"{name}: {exc}")
            continue
        if hasattr(mod, "Interpreter"):  # TF 2.21's tensorflow.lite imports but has no Interpreter
            return mod
        errors.append(f"{name}: has no Interpreter")
    raise MissingDependencyError(
        "no TFLite interpreter could be imported (" + "; ".join(errors) + ")",
        fix='pip install "edgetransfer[runtime]"  (installs ai-edge-litert)',
    )


# LiteRT's C++ logger writes this to file descriptor 2 on every Interpreter (the README says the
# runtime is quiet; issue #26): dropped, and anything else written meanwhile is passed on.
_NOISE = re.compile(
    rb"^INFO: (Created TensorFlow Lite (XNNPACK )?delegate for CPU\.|Initialized TensorFlow Lite runtime\.)\s*$"
)
_FD_LOCK = threading.Lock()
NOISE = re.compile(_NOISE.pattern + rb"|" + litert_compiled.NOISE.pattern)


@contextlib.contextmanager
def quiet_native_stderr(noise: re.Pattern[bytes] | None = None) -> Iterator[None]:
    """While the block runs, lines native code writes to fd 2 that match ``noise`` are dropped;
    every other line is written to stderr afterwards (so errors are never hidden). Set
    ``EDGETRANSFER_NATIVE_LOGS=1`` to see everything as written."""
    if os.environ.get("EDGETRANSFER_NATIVE_LOGS"):
        yield
        return
    with _FD_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        sink = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finally, after fd 2 is restored)
        try:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                drop = noise or NOISE
                kept = [ln for ln in sink.read().splitlines(keepends=True) if not drop.match(ln)]
                if kept:
                    os.write(2, b"".join(kept))
        finally:
            os.close(saved)
            sink.close()


class _Session:
    """A loaded ``.tflite`` model. Thread-safe: ``run`` may be called from many threads.

    A LiteRT ``Interpreter`` is not: concurrent ``set_tensor``/``invoke`` calls fail with
    "There is at least 1 reference to internal data in the interpreter" or mix up inputs
    (the interpreter owns one set of tensor buffers; see the LiteRT Python API docs on
    ``Interpreter.invoke``). A lock serialises resize, set, invoke and get, so threads share one
    interpreter's memory but not its speed: for parallel throughput load one session per thread.
    """

    def __init__(self, interp, path: str | Path = "<model>", settings: dict | None = None):
        self.interp = interp
        self.path = Path(path)
        self.settings = {"runtime": "litert", "api": litert_compiled.API_INTERPRETER, **(settings or {})}
        self._lock = threading.Lock()
        inp = interp.get_input_details()[0]
        self._out = interp.get_output_details()[0]
        self.outputs = len(interp.get_output_details())  # run() reads the first: an importer refuses more
        scale, zp = inp["quantization"]
        self._in = inp
        self.input_spec = InputSpec(
            tuple(int(d) for d in inp["shape"]),
            np.dtype(inp["dtype"]).name,
            "NHWC",
            float(scale) if scale else None,
            int(zp) if scale else None,
        )
        check_input_spec(self.input_spec, self.path)
        self._batch = int(inp["shape"][0])
        # A static batch-1 graph (the export default) cannot be resized: XNNPACK planned it once.
        signature = inp.get("shape_signature", inp["shape"])
        self._static_batch = len(signature) > 0 and int(signature[0]) == 1

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Class scores ``[N, classes]`` (float32) for a ``[N, size, size, 3]`` batch in [0, 255].

        Raises:
            ConfigError: the batch's shape does not fit the model's input.
            RuntimeBackendError: LiteRT failed, or the output holds NaN or inf.
        """
        batch = np.asarray(batch)
        require_input_shape(batch, self.input_spec, self.path)
        if self._static_batch and len(batch) > 1:
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(len(batch))])
        try:
            x = quantize_input(batch, self.input_spec)
            with self._lock:
                if batch.shape[0] != self._batch:
                    self.interp.resize_tensor_input(self._in["index"], [batch.shape[0], *self._in["shape"][1:]])
                    self.interp.allocate_tensors()
                    self._batch = batch.shape[0]
                self.interp.set_tensor(self._in["index"], x)
                self.interp.invoke()
                out = self.interp.get_tensor(self._out["index"])  # a copy, safe to use after the lock
        except (ValueError, RuntimeError, TypeError) as exc:  # LiteRT raises these; a mutated model's odd
            # input dtype makes quantize_input raise ValueError
            raise RuntimeBackendError(
                f"LiteRT failed to run the model ({exc})",
                path=self.path,
                fix="check the batch matches the model input; re-export the model",
            ) from None
        scale, zp = self._out["quantization"]
        if scale:
            out = (out.astype(np.float32) - zp) * scale
        return require_finite(out.astype(np.float32), self.path)


class LiteRT:
    """LiteRT interpreter runtime (CPU, XNNPACK by default)."""

    name = "litert"
    formats = ("tflite",)

    def version(self) -> str:
        mod = interpreter_module()
        root = importlib.import_module(mod.__name__.split(".")[0])
        return f"{root.__name__} {getattr(root, '__version__', '?')}"

    def load(self, path: str | Path, threads: int | None = None, settings: dict | None = None):
        """Load ``path`` with ``threads`` threads; ``settings``: ``{"op_resolver": "xnnpack"}`` (the default
        delegate) or ``"builtin"`` (LiteRT's own kernels, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES);
        ``{"api": "compiled_model"}`` (the default where ``ai_edge_litert`` 2.x has it and the file has a static
        batch of 1) or ``"interpreter"``. The session's ``settings`` say which API ran."""
        path = require_file(path)
        mod = interpreter_module()
        kw = {}
        resolver = (settings or {}).get("op_resolver", "xnnpack")
        api = (settings or {}).get("api", "compiled_model")
        if (
            resolver not in ("xnnpack", "builtin")
            or api not in ("compiled_model", "interpreter")
            or set(settings or {}) - {"op_resolver", "api"}
        ):
            raise ConfigError(
                f"LiteRT settings {settings} are not ones it takes",
                fix="use op_resolver: xnnpack|builtin, api: compiled_model|interpreter",
            )
        if api == "compiled_model" and litert_compiled.available():
            compiled = self._compiled(mod, path, threads, resolver)
            if compiled is not None:
                return compiled
        if resolver == "builtin":
            kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with quiet_native_stderr():
                interp = mod.Interpreter(model_path=str(path), num_threads=threads, **kw)
                for detail in interp.get_input_details()[:1]:  # before allocate_tensors sizes the buffers
                    check_input_spec(InputSpec(tuple(int(d) for d in detail["shape"]), "float32"), path)
                interp.allocate_tensors()
            return _Session(interp, path, {"op_resolver": resolver, "threads": threads or "default"})
        except (ValueError, RuntimeError, IndexError, KeyError, TypeError) as exc:  # IndexError: no inputs
            raise RuntimeBackendError(
                f"LiteRT could not load the model ({exc})", path=path, fix="re-export it; check it is a .tflite file"
            ) from None

    @staticmethod
    def _compiled(mod, path: Path, threads: int | None, resolver: str):
        """A CompiledModel session, or None for a file the Interpreter must run (a dynamic batch)."""
        try:
            with quiet_native_stderr():
                io = litert_compiled.compilable(mod, path)
                return litert_compiled.load(path, threads, resolver, *io) if io is not None else None
        except (ValueError, RuntimeError, IndexError, KeyError, TypeError) as exc:  # IndexError: no inputs
            raise RuntimeBackendError(
                f"LiteRT could not load the model ({exc})", path=path, fix="re-export it; check it is a .tflite file"
            ) from None
