"""ONNX Runtime with the execution provider a target profile names, where installed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import _lazy
from ..errors import RuntimeBackendError
from .base import InputSpec, require_file, to_nchw

PROVIDERS = {
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider", "nnapi": "NnapiExecutionProvider", "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def onnx_metadata(path: Path) -> dict:
    ort = _lazy.require("onnxruntime", extra="runtime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    meta = json.loads(props["edgetransfer"]) if "edgetransfer" in props else {}
    if "labels" in props and "labels" not in meta:
        meta["labels"] = props["labels"].splitlines()
    return meta


class _Session:
    def __init__(self, sess):
        self.sess = sess
        inp = sess.get_inputs()[0]
        self._name = inp.name
        shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        layout = "NCHW" if len(shape) == 4 and shape[1] == 3 and shape[3] != 3 else "NHWC"
        dtype = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}.get(inp.type, "float32")
        self.input_spec = InputSpec(shape, dtype, layout)

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = to_nchw(batch, self.input_spec).astype(self.input_spec.dtype)
        return np.asarray(self.sess.run(None, {self._name: x})[0], dtype=np.float32)


class OnnxRuntime:
    """ONNX Runtime; ``provider`` is a short name (cpu, cuda, tensorrt, coreml, nnapi, qnn, openvino)."""

    name = "onnxruntime"
    formats = ("onnx",)

    def __init__(self, provider: str = "cpu"):
        self.provider = provider

    def version(self) -> str:
        return f"onnxruntime {_lazy.require('onnxruntime', extra='runtime').__version__}"

    def available(self) -> bool:
        ort = _lazy.require("onnxruntime", extra="runtime")
        return PROVIDERS.get(self.provider, "") in ort.get_available_providers()

    def load(self, path: str | Path, threads: int | None = None) -> _Session:
        path = require_file(path)
        ort = _lazy.require("onnxruntime", extra="runtime")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = [PROVIDERS[self.provider], "CPUExecutionProvider"] if self.available() else ["CPUExecutionProvider"]
        try:
            return _Session(ort.InferenceSession(str(path), opts, providers=list(dict.fromkeys(providers))))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeBackendError(f"ONNX Runtime could not load the model ({exc})", path=path,
                                      fix="re-export it; check it is an .onnx file") from None
