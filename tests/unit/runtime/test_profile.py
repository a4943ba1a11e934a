"""Per-op profiles, the benchmark_model op table, tuning and the bf16 check, on tiny models built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetransfer.errors import ConfigError, RuntimeBackendError
from edgetransfer.runtime import op_table, peak
from edgetransfer.runtime import profile as P
from edgetransfer.runtime import tune as T

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / "tests/standins/benchmark_model"
PEAK = {"fp32": 100.0, "int8": 400.0}


@pytest.fixture(autouse=True)
def _peak(tmp_path, monkeypatch):
    """A fixed peak in a private cache: measuring the real one takes ~10 s per thread count."""
    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(peak, "measure_peak", lambda threads, budget_s=1.0: dict(PEAK))


def tiny_onnx(path: Path, size: int = 32) -> Path:
    """Conv 3x3 s2 -> Relu -> depthwise 3x3 -> pointwise -> pool -> MatMul -> Softmax, NCHW, named nodes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shapes = {"w1": (16, 3, 3, 3), "b1": (16,), "wd": (16, 1, 3, 3), "w2": (32, 16, 1, 1), "fc": (32, 4)}
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.1, n) for n, s in shapes.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="stem_conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="stem_relu"),
        helper.make_node("Conv", ["r1", "wd"], ["d1"], name="block_dw", pads=[1, 1, 1, 1], group=16),
        helper.make_node("Conv", ["d1", "w2"], ["c2"], name="block_pw"),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc"], ["logits"], name="head"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict[str, Path]:
    """The tiny graph in fp32, and int8 (QDQ, per-channel weights) by ONNX Runtime's static quantizer."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    root = tmp_path_factory.mktemp("onnx")
    fp32 = tiny_onnx(root / "tiny_fp32.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.items = iter([{"x": rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    int8 = root / "tiny_int8.onnx"
    quantize_static(
        str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, per_channel=True
    )
    return {"fp32": fp32, "int8": int8}


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A tiny Keras conv net as a float .tflite (TFLiteConverter)."""
    from edgetransfer import _lazy

    tf = _lazy.tf()
    keras = tf.keras
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out)
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


# -- per-op profiles ---------------------------------------------------------------------------------


def _check_profile(prof: P.OpProfile, graph: list[P.GraphOp], *, within_wall: bool = True) -> None:
    assert prof.supported and prof.runs == 10 and prof.ops
    assert sum(o.time_ms for o in prof.ops) == pytest.approx(prof.total_ms)
    assert sum(o.share for o in prof.ops) == pytest.approx(1.0)
    # ops are timed inside the run: their sum is part of the run's wall time (Python and the runtime's
    # own overhead between ops are the rest), and on a shared machine at most a little above it
    assert prof.total_ms > 0
    if within_wall:
        assert prof.total_ms <= prof.wall_ms * 1.2
    # worst first: the ms lost against the peak never increase down the table
    lost = [o.lost_ms for o in prof.ops]
    assert lost == sorted(lost, reverse=True)
    # every MAC-carrying graph op is joined once, with its kind, shape and rate
    macs = {g.name: g.macs for g in graph if g.macs}
    joined = [o for o in prof.ops if o.macs]
    assert sum(o.macs for o in joined) == sum(macs.values())
    for o in joined:
        assert o.kind in ("conv", "depthwise", "dense") and o.shape and o.gmacs and o.gmacs > 0
        assert o.peak_share == pytest.approx(o.gmacs / PEAK[o.precision])
    assert prof.peaks == PEAK and prof.peak_share() is not None
    doc = json.loads(json.dumps(prof.to_json()))
    assert P.OpProfile.from_json(doc) == prof and doc["by_type"] and doc["by_kind"]
    assert "GMAC/s" in prof.render()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_profile_joins_the_graph(onnx_files, precision):
    path = onnx_files[precision]
    graph = P.onnx_graph_ops(path)
    assert {g.name for g in graph if g.macs} >= {"stem_conv", "block_dw", "block_pw"} or precision == "int8"
    prof = P.profile(path, "onnxruntime", threads=1, runs=10)
    _check_profile(prof, graph)
    assert prof.source.startswith("onnxruntime profiling JSON")
    kinds = {o.kind for o in prof.ops if o.macs}
    assert {"conv", "depthwise"} <= kinds
    if precision == "int8":  # ONNX Runtime turns the QDQ Conv into QLinearConv: rated against the int8 peak
        assert any(o.type == "QLinearConv" and o.precision == "int8" and o.macs for o in prof.ops)


def test_openvino_profile_joins_the_graph(onnx_files):
    pytest.importorskip("openvino")
    path = onnx_files["fp32"]
    prof = P.profile(path, "openvino", threads=1, runs=10)
    # OpenVINO's counters are the request's own kernel times, not a share of the Python-side wall
    # time (seen 0.42 ms of counters in a 0.07 ms median wall on a loaded 2-core machine)
    _check_profile(prof, P.onnx_graph_ops(path), within_wall=False)
    assert all(o.kernel for o in prof.ops)  # OpenVINO names the kernel it picked (brgconv_avx512_f32, ...)
    assert {o.name.split("/")[0] for o in prof.ops if o.macs} >= {"stem_conv", "block_dw", "block_pw"}


def test_litert_says_why_there_is_no_op_profile(tiny_tflite):
    prof = P.profile(tiny_tflite, "litert", threads=1, runs=3)
    assert not prof.supported and "no op profiler" in prof.reason and "benchmark_model" in prof.reason
    assert prof.wall_ms > 0 and not prof.ops and "no per-op profile" in prof.render()


def test_profile_refuses_a_pair_it_cannot_read(onnx_files, tmp_path):
    with pytest.raises(ConfigError, match="no per-op profile"):
        P.profile(onnx_files["fp32"], "litert")
    with pytest.raises(RuntimeBackendError, match="not found"):
        P.profile(tmp_path / "missing.onnx", "onnxruntime")


def test_ort_events_keep_only_the_last_runs():
    ev = lambda name, ts, dur, cat="Node", **a: {"name": name, "ts": ts, "dur": dur, "cat": cat, "args": a}
    trace = [
        ev("model_run", 0, 900, "Session"),
        ev("conv_kernel_time", 10, 800, op_name="Conv"),  # the warm-up run: left out
        ev("model_run", 1000, 300, "Session"),
        ev("conv_kernel_time", 1010, 200, op_name="Conv"),
        ev("conv_fence_before", 1005, 0, op_name="Conv"),
        ev("relu_kernel_time", 1220, 50, op_name="Relu"),
    ]
    raw, wall = P.ort_events(trace, runs=1)
    assert sorted((r[0], r[1], r[3]) for r in raw) == [("conv", "Conv", 0.2), ("relu", "Relu", 0.05)]
    assert wall == pytest.approx(0.3)


def test_host_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(peak, "measure_peak", lambda threads, budget_s=1.0: calls.append(threads) or dict(PEAK))
    assert peak.host_peak(1) == PEAK and peak.host_peak(1) == PEAK and calls == [1]
    assert peak.host_peak(2) == PEAK and calls == [1, 2]
    cached = json.loads((tmp_path / "cache/peaks.json").read_text())
    assert len(cached) == 2 and all("measured_at" in v for v in cached.values())
    assert peak.host_peak(1, refresh=True) == PEAK and calls == [1, 2, 1]


def test_gemm_models_run():
    import onnxruntime as ort

    for prec, dtype in (("fp32", np.float32), ("int8", np.uint8)):
        sess = ort.InferenceSession(peak.gemm_model(16, prec), providers=["CPUExecutionProvider"])
        assert sess.run(None, {"A": np.ones((16, 16), dtype)})[0].shape == (16, 16)


def test_bench_profile_json(onnx_files, tmp_path):
    peak.host_peak(1)  # into the cache the child process reads
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "edgetransfer.runtime", "bench", str(onnx_files["fp32"]), "--threads", "1"]
    cmd += ["--budget-s", "0.2", "--min-runs", "5", "--profile", "--profile-runs", "5"]
    doc = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True, env=env).stdout)
    assert doc["profile"]["runtime"] == "onnxruntime" and doc["profile"]["ops"] and doc["p50"] > 0
    assert doc["profile"]["peaks"] == PEAK
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    assert "by type:" in text and "%peak" in text


# -- benchmark_model's op table ----------------------------------------------------------------------

# As LiteRT's benchmark_model prints it with --enable_op_profiling=true and XNNPACK (stats_calculator.cc:
# tab + right-aligned fields), numbers from a real run of a quantized MobileNet, cut to a few rows.
REAL = """INFO: Inference timings in us: Init: 16772, First inference: 8781, Warmup (avg): 7514.93, Inference (avg): 7454.97
INFO: Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t                         [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t             ModifyGraphWithDelegate\t   14.842\t   14.842\t 99.317%\t 99.317%\t  3428.000\t        1\tModifyGraphWithDelegate/0
\t                     AllocateTensors\t    0.102\t    0.102\t  0.683%\t100.000%\t     0.000\t        1\tAllocateTensors/0

INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t                         [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t       Convolution (NHWC, QU8) IGEMM\t    0.267\t    0.278\t  3.783%\t  3.783%\t     0.000\t        1\tDelegate/Convolution (NHWC, QU8) IGEMM:0
\t      Convolution (NHWC, QU8) DWConv\t    0.243\t    0.271\t  3.681%\t  7.464%\t     0.000\t        1\tDelegate/Convolution (NHWC, QU8) DWConv:1
\t        Convolution (NHWC, QU8) GEMM\t    0.089\t    0.097\t  1.314%\t  8.778%\t     0.000\t        1\tDelegate/Convolution (NHWC, QU8) GEMM:2
\t                       Add (ND, QU8)\t    0.051\t    0.051\t  0.693%\t  9.471%\t     0.000\t        1\tDelegate/Add (ND, QU8):3
\t                             SOFTMAX\t    0.004\t    0.005\t  0.068%\t  9.539%\t     0.000\t        1\t[MobilenetV1/Predictions/Softmax]:30

============================== Top by Computation Time ==============================
\t                         [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t       Convolution (NHWC, QU8) IGEMM\t    0.267\t    0.278\t  3.783%\t  3.783%\t     0.000\t        1\tDelegate/Convolution (NHWC, QU8) IGEMM:0

Number of nodes executed: 5
============================== Summary by node type ==============================
\t                         [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t       Convolution (NHWC, QU8) IGEMM\t        1\t     0.278\t     3.783%\t     3.783%\t     0.000\t        1
"""


def test_parse_benchmark_model_real_format():
    prof = op_table.parse_benchmark_model(REAL, "mobilenet_quant.tflite", threads=4)
    names = {o.name for o in prof.ops}
    assert "ModifyGraphWithDelegate/0" not in names  # the initialization table is not the runs'
    assert len(prof.ops) == 5 and "Delegate/Convolution (NHWC, QU8) DWConv:1" in names
    assert prof.by_type()["Convolution (NHWC, QU8) IGEMM"] == pytest.approx(0.278)
    assert prof.total_ms == pytest.approx(0.278 + 0.271 + 0.097 + 0.051 + 0.005)
    assert prof.wall_ms == pytest.approx(7.45497) and prof.runtime == "litert (benchmark_model)"
    assert prof.ops[0].name.endswith("IGEMM:0")  # worst first (nothing rated: the device's peak is unknown)
    # an older build's table has a [start] column: the header says where each field is
    old = REAL.replace("[first]", "[start]\t  [first]").replace("\t    0.267\t", "\t    0.000\t    0.267\t")
    assert op_table.parse_benchmark_model(old).ops[0].time_ms == pytest.approx(0.278)
    with pytest.raises(RuntimeBackendError, match="no op profile") as err:
        op_table.parse_benchmark_model("INFO: count=50 first=1 curr=1 min=1 max=1 avg=1 std=0")
    assert "--enable_op_profiling=true" in err.value.fix


def test_standin_benchmark_model_prints_a_profile_that_parses(tiny_tflite, tmp_path):
    from edgetransfer.exporter.formats import graphops

    env = {
        **os.environ,
        "EDGETRANSFER_STANDIN_ROOT": str(tmp_path),
        "EDGETRANSFER_STANDIN_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, str(STANDIN), f"--graph={tiny_tflite}", "--num_threads=1"]
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    assert op_table.BENCHMARK_MODEL_SECTION not in plain  # unchanged without the flag
    out = subprocess.run([*cmd, "--enable_op_profiling=true"], capture_output=True, text=True, env=env, check=True)
    ops = graphops.tflite_ops(tiny_tflite)
    prof = op_table.parse_benchmark_model(out.stdout, str(tiny_tflite), 1, ops)
    # the table prints each op's ms with 3 decimals: on a tiny model rounding alone is up to 0.0005 ms an op
    assert len(prof.ops) == len(ops) and prof.total_ms == pytest.approx(prof.wall_ms, rel=0.01, abs=5e-4 * len(ops))
    # builtin rows are "[tensor]:index": each joins the graph op at its index
    assert {o.type for o in prof.ops} == {op.type for op in ops}
    assert sum(o.macs for o in prof.ops) == sum(op.macs for op in ops) > 0
    assert all(o.kind for o in prof.ops)


# -- tuning and bf16 ---------------------------------------------------------------------------------


def test_tune_returns_a_winner_among_its_candidates(onnx_files):
    cands = [{"graph_optimization_level": "all"}, {"graph_optimization_level": "basic", "allow_spinning": False}]
    res = T.tune(onnx_files["fp32"], "onnxruntime", (1, 2), candidates=cands, budget_s=0.5)
    tried = [t.settings for t in res.trials]
    assert res.settings in tried and len(tried) == 4  # 2 candidates x 2 thread counts (the default among them)
    assert res.p50_ms == min(t.p50_ms for t in res.trials) and res.rounds >= 5
    assert res.default_settings == {"graph_optimization_level": "all", "threads": 2} and res.speedup >= 1.0
    assert T.TuneResult.from_json(json.loads(json.dumps(res.to_json()))) == res
    T.runner(onnx_files["fp32"], "onnxruntime", res.settings)()  # the winner reproduces
    assert "winner" in res.render()


@pytest.mark.parametrize("runtime", ["openvino", "litert"])
def test_tune_other_runtimes(onnx_files, tiny_tflite, runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    path = tiny_tflite if runtime == "litert" else onnx_files["fp32"]
    res = T.tune(path, runtime, (1,), budget_s=0.3)
    assert len(res.trials) == len(T.CANDIDATES[runtime]) and res.settings in [t.settings for t in res.trials]
    with pytest.raises(ConfigError):
        T.tune(path, "tvm")


def test_bf16_flags_from_cpuinfo():
    assert T.bf16_support("flags\t: fpu avx512f avx512_bf16 amx_tile\n") == {"avx512_bf16": True, "amx_bf16": False}
    assert T.bf16_support("Features\t: fp asimd bf16\n") == {"avx512_bf16": False, "amx_bf16": False}


def test_bf16_check_compares_with_f32(onnx_files):
    pytest.importorskip("openvino")
    res = T.bf16_check(onnx_files["fp32"], threads=1, inputs=5, budget_s=0.3)
    assert res.precision_read_back in ("bf16", "f32") and res.f32_p50_ms > 0 and res.bf16_p50_ms > 0
    if not any(T.bf16_support().values()):
        assert res.max_abs_diff == 0.0  # no bf16 units: OpenVINO computes f32 whatever the hint
    assert res.max_abs_diff < 0.05 and res.top1_agreement >= 0.8 and res.to_json()["speedup"] > 0


def test_keras_layers_from_name_scopes():
    names = [
        "model/efficientnet_lite0/stem_bn/batchnorm/mul",
        "[model/efficientnet_lite0/block1a_dwconv/depthwise;model/efficientnet_lite0/block1a_bn/x]:3",
        "model/efficientnet_lite0/block1a_project_conv/convolution",
        "model/dense/MatMul",
        "stem_conv",
    ]
    got = P.keras_layers(names)
    assert list(got.values()) == ["stem_bn", "block1a_dwconv", "block1a_project_conv", "dense", ""]
