"""Issue #39 items 2, 3 and 7: delegation observed where the file runs, LiteRT's CompiledModel path, and
"int8" that is not integer (fast tests on the untrained run's files, real runtimes)."""

import json

import numpy as np
import pytest

from edgetransfer import targets
from edgetransfer.errors import ConfigError
from edgetransfer.records import Budget
from edgetransfer.records.delegation import Delegation, from_log
from edgetransfer.records.measure import Measurement
from edgetransfer.runtime import LiteRT
from edgetransfer.runtime.delegation import observe


def test_xnnpack_leaves_the_uint8_boundary_to_the_cpu_and_says_which_ops(untrained_exports):
    """The int8 file with uint8 input/output: XNNPACK takes its int8 core, not the uint8<->int8 QUANTIZE ops."""
    d = observe(untrained_exports[("tflite", "int8")].path, "litert")
    assert not d.full and d.nodes_accelerated < d.nodes_total
    assert d.fallback_ops.count("QUANTIZE") == 2, d  # the uint8 -> int8 input and int8 -> uint8 output
    assert d.fully_accelerated is False and d.api == "CompiledModel"  # LiteRT's own word agrees with the count
    whole = observe(untrained_exports[("tflite", "fp32")].path, "litert")
    assert whole.full and whole.partitions == 1 and whole.fallback_ops == () and whole.fully_accelerated is True


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_onnx_runtimes_name_where_every_node_ran(untrained_exports, runtime):
    pytest.importorskip(runtime)
    d = observe(untrained_exports[("onnx", "int8")].path, runtime)
    assert d.full and d.nodes_total > 0 and d.runtime == runtime
    fp32 = observe(untrained_exports[("onnx", "fp32")].path, runtime)
    assert fp32.float_ops == fp32.nodes_total  # a float file: every node computes in float
    assert d.float_ops < fp32.float_ops  # the int8 file's QDQ pairs became integer kernels


def test_check_require_full_delegation_fails_naming_the_op_and_passes_a_whole_graph(invoke, untrained_exports):
    code, out, _ = invoke("check", untrained_exports[("tflite", "int8")].path, "--target", "host-cpu",
                          "--require-full-delegation", "--json")  # fmt: skip
    doc = json.loads(out)
    chk = next(c for c in doc["checks"] if c["name"] == "full_delegation")
    assert code == 1 and chk["status"] == "failed" and "QUANTIZE" in chk["message"] and chk["provenance"] == "observed"
    code, out, _ = invoke("check", untrained_exports[("tflite", "fp32")].path, "--target", "host-cpu",
                          "--require-full-delegation")  # fmt: skip
    assert code == 0 and "XNNPACK took all" in out


def test_profile_full_delegation_key(invoke, untrained_exports, tmp_path):
    src = (targets.SHIPPED / "host-cpu.yaml").read_text().replace("host-cpu", "strict-cpu")
    (tmp_path / "strict-cpu.yaml").write_text(src.replace("accuracy_drop: 1.0", "full_delegation: true"))
    code, out, _ = invoke("check", untrained_exports[("tflite", "int8")].path, "--target", "strict-cpu",
                          "--targets-dir", tmp_path)  # fmt: skip
    assert code == 1 and "QUANTIZE" in out
    (tmp_path / "strict-cpu.yaml").write_text(src.replace("accuracy_drop: 1.0", "full_delegation: 1"))
    code, _, err = invoke("check", untrained_exports[("tflite", "fp32")].path, "--target", "strict-cpu",
                          "--targets-dir", tmp_path)  # fmt: skip
    assert code == 2 and "full_delegation" in err


def test_estimate_target_judges_the_static_prediction(invoke, untrained_exports):
    """Nothing runs on an estimated Edge TPU: the analyzer's prediction is judged, labelled as such."""
    code, out, _ = invoke("check", untrained_exports[("tflite", "int8")].path, "--target", "edgetpu",
                          "--require-full-delegation", "--json")  # fmt: skip
    chk = next(c for c in json.loads(out)["checks"] if c["name"] == "full_delegation")
    assert chk["provenance"] == "predicted" and code == (0 if chk["status"] == "passed" else 1)


def test_benchmark_model_delegate_line_is_read():
    log = (
        "INFO: Initialized TensorFlow Lite runtime.\n"
        "INFO: Replacing 64 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 3 partitions "
        "for the whole graph.\n"
    )
    d = from_log(log)
    assert d == Delegation("litert", "TfLiteGpuDelegateV2", 66, 64, 3, source="device log", note=d.note)
    assert not d.full and from_log("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") is None


def test_measurement_carries_delegation_and_old_reports_load():
    d = Delegation("litert", "XNNPACK", 10, 8, 1, ("QUANTIZE", "QUANTIZE"), float_ops=0)
    m = Measurement("a.tflite", "tflite", "int8", "host-cpu", 10, delegation=d)
    back = Measurement.from_json(json.loads(json.dumps(m.to_json())))
    assert back.delegation == d and back.to_json()["delegation"]["full"] is False
    doc = m.to_json()
    del doc["delegation"]  # a report written before the field existed
    assert Measurement.from_json(doc).delegation is None


def test_dynamic_file_is_refused_on_integer_only_targets(invoke, untrained_exports, tmp_path):
    code, _, err = invoke("check", untrained_exports[("tflite", "dynamic")].path, "--target", "edgetpu",
                          "--max-size-mb", "5")  # fmt: skip
    assert code == 2 and "integer-only" in err and "float activations" in err
    bad = (targets.SHIPPED / "edgetpu.yaml").read_text().replace("precisions: [int8]", "precisions: [int8, dynamic]")
    (tmp_path / "edgetpu.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="integer_only"):
        targets.load_file(tmp_path / "edgetpu.yaml")


def test_litert_runs_compiled_model_and_says_so(untrained_exports):
    path = untrained_exports[("tflite", "int8")].path
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    compiled, interp = LiteRT().load(path), LiteRT().load(path, settings={"api": "interpreter"})
    assert compiled.settings["api"] == "CompiledModel" and interp.settings["api"] == "Interpreter"
    np.testing.assert_array_equal(compiled.run(x), interp.run(x))  # the same XNNPACK int8 kernels
    with pytest.raises(ConfigError):
        LiteRT().load(path, settings={"api": "gpu"})


def test_full_delegation_budget_is_a_flag():
    assert Budget(full_delegation=True).describe() == "fully delegated"
    with pytest.raises(ConfigError):
        Budget(full_delegation=False)


def test_device_result_decides_delegation_not_this_host(invoke, untrained_exports, tmp_path):
    """A real benchmark_litert_model --result_json (LiteRT's own tool, run here as the stand-in device) carries
    fully_accelerated: that, not this host's observation, is judged."""
    from test_device_results import PHONE, _check, litert_result

    for prec, full in (("int8", False), ("fp32", True)):
        art = untrained_exports[("tflite", prec)]
        result = litert_result(art.path, tmp_path / f"{prec}.json")
        assert json.loads(result.read_text())["fully_accelerated"] is full  # LiteRT's word, as observed here
        code, out, _ = _check(invoke, art.path, result, tmp_path, "--require-full-delegation", "--json")
        chk = next(c for c in json.loads(out)["checks"] if c["name"] == "full_delegation")
        assert code == (0 if full else 1) and PHONE in chk["provenance"] and "device log" in chk["provenance"]


def test_benchmark_model_log_of_a_device_is_judged(invoke, untrained_exports, tmp_path):
    """benchmark_model's text (the stand-in prints the tool's format) with the delegate line a GPU run prints."""
    from test_device_results import _check

    art = untrained_exports[("tflite", "fp32")]
    log = tmp_path / "bm.txt"
    log.write_text(
        f"INFO: Graph: [{art.path}]\nINFO: The input model file size (MB): {art.size_bytes / 1e6:.6g}\n"
        "INFO: Replacing 6 out of 8 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 3 partitions "
        "for the whole graph.\nINFO: Inference timings in us: Init: 1000, First inference: 900, "
        "Warmup (avg): 900, Inference (avg): 800\n"
    )
    code, out, err = _check(invoke, art.path, log, tmp_path, "--require-full-delegation", "--json")
    if code == 2:
        pytest.skip(f"the benchmark_model reader wants more of the log than this sample: {err[-300:]}")
    chk = next(c for c in json.loads(out)["checks"] if c["name"] == "full_delegation")
    assert code == 1 and "TfLiteGpuDelegateV2 took 6/8 nodes" in chk["message"]
