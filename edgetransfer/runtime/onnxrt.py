"""ONNX Runtime with the execution provider a target profile names: refused, not replaced, when absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import _lazy
from ..errors import ConfigError, RuntimeBackendError
from .base import InputSpec, require_file, require_finite, require_input_shape, to_nchw
from .safe import check_input_spec

# Short names -> ONNX Runtime provider names (onnxruntime.ai/docs/execution-providers).
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def onnx_metadata(path: Path) -> dict:
    ort = _lazy.require("onnxruntime", extra="runtime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    try:
        meta = json.loads(props["edgetransfer"]) if "edgetransfer" in props else {}
    except (json.JSONDecodeError, RecursionError):
        raise RuntimeBackendError(
            "its edgetransfer metadata is damaged (not JSON)", path=path, fix="re-export the model with edgetransfer"
        ) from None
    if not isinstance(meta, dict):
        raise RuntimeBackendError(
            "its edgetransfer metadata is not a JSON object", path=path, fix="re-export the model with edgetransfer"
        )
    if "labels" in props and "labels" not in meta:
        meta["labels"] = props["labels"].splitlines()
    return meta


# graph_optimization_level setting -> ONNX Runtime's enum member (onnxruntime.GraphOptimizationLevel)
LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
SETTING_KEYS = ("graph_optimization_level", "allow_spinning", "execution_mode")


def session_options(threads: int | None, settings: dict | None = None, profile_prefix: str = ""):
    """``SessionOptions`` for ``threads`` intra-op threads and ``settings`` (``graph_optimization_level``:
    ``disable``/``basic``/``extended``/``all``, default ``all``; ``allow_spinning``: bool;
    ``execution_mode``: ``sequential``/``parallel``).

    Raises:
        ConfigError: a key or value ONNX Runtime does not take.
    """
    ort = _lazy.require("onnxruntime", extra="runtime")
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    level = settings.get("graph_optimization_level", "all")
    if unknown or level not in LEVELS:
        raise ConfigError(
            f"ONNX Runtime settings {settings} are not ones it takes",
            fix=f"use {', '.join(SETTING_KEYS)}; graph_optimization_level one of {', '.join(LEVELS)}",
        )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    if threads:
        opts.intra_op_num_threads = int(threads)
    if "allow_spinning" in settings:  # onnxruntime_session_options_config_keys.h
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings["allow_spinning"] else "0")
    if settings.get("execution_mode") == "parallel":
        opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def input_spec(shape, dtype: str) -> InputSpec:
    """The :class:`InputSpec` of an ONNX input: NCHW when dim 1 is 3 channels and the last is not."""
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)
    layout = "NCHW" if len(shape) == 4 and shape[1] == 3 and shape[3] != 3 else "NHWC"
    return InputSpec(shape, dtype, layout)


class _Session:
    """A loaded ONNX Runtime session; ``settings`` says what it really runs with."""

    def __init__(self, sess, settings: dict, path: str | Path = ""):
        self.path = str(path)
        self.sess = sess
        inp = sess.get_inputs()[0]
        self._name = inp.name
        self.input_spec = check_input_spec(input_spec(inp.shape, _DTYPES.get(inp.type, "float32")), path)
        self.outputs = len(sess.get_outputs())  # run() reads the first: an importer refuses more
        self.providers = list(sess.get_providers())
        self.settings = {**settings, "providers": self.providers}

    def run(self, batch: np.ndarray) -> np.ndarray:
        require_input_shape(batch, self.input_spec, self.path)
        if self.input_spec.shape[0] == 1 and len(batch) > 1:  # a static batch-1 graph: one image at a time
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(len(batch))])
        x = to_nchw(batch, self.input_spec).astype(self.input_spec.dtype)
        return require_finite(np.asarray(self.sess.run(None, {self._name: x})[0], dtype=np.float32), self.path)


class OnnxRuntime:
    """ONNX Runtime; ``provider`` is a short name (cpu, cuda, tensorrt, coreml, nnapi, qnn, openvino).

    Raises:
        ConfigError: ``provider`` is not a short name this toolkit knows.
    """

    name = "onnxruntime"
    formats: tuple[str, ...] = ("onnx",)

    def __init__(self, provider: str = "cpu"):
        if provider not in PROVIDERS:
            raise ConfigError(f"unknown ONNX Runtime provider {provider!r}", fix=f"use one of {', '.join(PROVIDERS)}")
        self.provider = provider

    def version(self) -> str:
        return f"onnxruntime {_lazy.require('onnxruntime', extra='runtime').__version__}"

    def available(self) -> bool:
        """Whether the installed onnxruntime build has this provider."""
        return PROVIDERS[self.provider] in _lazy.require("onnxruntime", extra="runtime").get_available_providers()

    def load(self, path: str | Path, threads: int | None = None, settings: dict | None = None) -> _Session:
        """Load ``path`` on the provider, with ``threads`` intra-op threads and ``settings``
        (:func:`session_options`; default: every graph optimisation).

        Raises:
            RuntimeBackendError: the provider is not in this onnxruntime build, or the model does not load.
        """
        path = require_file(path)
        ort = _lazy.require("onnxruntime", extra="runtime")
        if not self.available():
            have = [_SHORT.get(p, p) for p in ort.get_available_providers()]
            raise RuntimeBackendError(
                f"ONNX Runtime provider {self.provider!r} is not available in onnxruntime {ort.__version__} "
                f"(available: {', '.join(have)})",
                path=path,
                fix=f"install the onnxruntime build with {PROVIDERS[self.provider]}, or use provider: cpu",
            )
        opts = session_options(threads, settings)
        # CPU stays in the list as ONNX Runtime's fallback for the ops a provider does not take.
        providers = list(dict.fromkeys([PROVIDERS[self.provider], "CPUExecutionProvider"]))
        try:
            sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeBackendError(
                f"ONNX Runtime could not load the model ({exc})",
                path=path,
                fix="re-export it; check it is an .onnx file",
            ) from None
        settings = {
            "runtime": "onnxruntime",
            "provider": self.provider,
            "intra_op_num_threads": threads or "default",
            "graph_optimization_level": LEVELS[(settings or {}).get("graph_optimization_level", "all")],
            **{k: v for k, v in (settings or {}).items() if k != "graph_optimization_level"},
        }
        return _Session(sess, settings, path)
