"""OpenVINO as a runtime for ONNX files, against ONNX Runtime; ONNX Runtime's settings and provider refusal."""

from __future__ import annotations

import numpy as np
import pytest

from edgetransfer import runtime
from edgetransfer.errors import EXIT_TOOLCHAIN, ConfigError, RuntimeBackendError

pytest.importorskip("openvino")

PALETTE = [(220, 40, 40), (40, 200, 60), (40, 60, 220)]  # the classes of the untrained_run fixture


def colour_batch(size: int, n: int = 9) -> np.ndarray:
    """Images like the tiny run's classes: a class colour plus noise, [0, 255] NHWC float32."""
    rng = np.random.default_rng(1)
    base = np.array([PALETTE[i % 3] for i in range(n)], dtype=np.float32)[:, None, None, :]
    return np.clip(base + rng.normal(0, 25, (n, size, size, 3)), 0, 255).astype(np.float32)


# int8: both run the QDQ graph in int8 but requantize at different points (OpenVINO fuses the
# DequantizeLinear/QuantizeLinear pairs into its own int8 kernels); on this tiny model they differ by
# up to ~0.06 in a probability, ~0.01 on average.
@pytest.mark.parametrize("precision, atol, mean_tol", [("fp32", 1e-4, 1e-5), ("int8", 0.1, 0.02)])
def test_openvino_agrees_with_onnxruntime(untrained_exports, precision, atol, mean_tol):
    path = untrained_exports["onnx", precision].path
    ov = runtime.OpenVINO().load(path, threads=1)
    ort = runtime.OnnxRuntime().load(path, threads=1)
    assert ov.input_spec == ort.input_spec
    x = colour_batch(ov.input_spec.size)
    p_ov, p_ort = ov.run(x), ort.run(x)
    assert p_ov.shape == p_ort.shape == (len(x), 3) and p_ov.dtype == np.float32
    np.testing.assert_array_equal(p_ov.argmax(1), p_ort.argmax(1))
    np.testing.assert_allclose(p_ov, p_ort, atol=atol)
    assert np.abs(p_ov - p_ort).mean() < mean_tol
    np.testing.assert_allclose(ov.run(x[:1]), p_ov[:1], atol=1e-5)  # batch 1 after batch 9
    assert ov.settings["PERFORMANCE_HINT"] == "LATENCY" and ov.settings["INFERENCE_NUM_THREADS"] == "1"
    assert ov.settings["INFERENCE_PRECISION_HINT"] == "f32" and ov.settings["device"] == "CPU"


def test_openvino_is_a_runtime(tmp_path):
    rt = runtime.get_runtime("openvino")
    assert isinstance(rt, runtime.Runtime) and rt.name == "openvino" and rt.formats == ("onnx",)
    assert rt.version().startswith("openvino 20")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(RuntimeBackendError, match="OpenVINO could not compile"):
        rt.load(broken)
    with pytest.raises(RuntimeBackendError, match="model file not found"):
        rt.load("missing.onnx")


def test_available_runtimes(untrained_exports):
    assert [r.name for r in runtime.available_runtimes(untrained_exports["onnx", "fp32"].path)] == [
        "onnxruntime",
        "openvino",
    ]
    assert [r.name for r in runtime.available_runtimes(untrained_exports["tflite", "fp32"].path)] == ["litert"]
    assert runtime.runtime_for(untrained_exports["onnx", "fp32"].path).name == "onnxruntime"
    with pytest.raises(ConfigError, match="no format for '.pt'"):
        runtime.available_runtimes("model.pt")


def test_onnxruntime_session_records_its_settings(untrained_exports):
    sess = runtime.OnnxRuntime("cpu").load(untrained_exports["onnx", "fp32"].path, threads=2)
    assert sess.providers == ["CPUExecutionProvider"]
    assert sess.settings["intra_op_num_threads"] == 2 and sess.settings["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert sess.sess.get_session_options().intra_op_num_threads == 2


def test_unavailable_provider_is_refused_not_replaced(untrained_exports):
    with pytest.raises(RuntimeBackendError) as err:
        runtime.OnnxRuntime("cuda").load(untrained_exports["onnx", "fp32"].path)
    assert err.value.exit_code == EXIT_TOOLCHAIN
    assert "'cuda' is not available" in str(err.value) and "available: " in str(err.value) and "cpu" in str(err.value)
    with pytest.raises(ConfigError, match="unknown ONNX Runtime provider 'bogus'") as err:
        runtime.load_session(untrained_exports["onnx", "fp32"].path, provider="bogus")
    assert "cpu, cuda" in err.value.fix
    with pytest.raises(ConfigError, match="ONNX Runtime setting"):
        runtime.get_runtime("openvino", provider="cuda")
