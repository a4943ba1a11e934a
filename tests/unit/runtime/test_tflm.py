"""TFLM (runtime/tflm.py, runtime/tflm_ops.py, formats/tflm.py): refusals before anything runs, the real TFLM kernels against LiteRT, the arena, the C source."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from edgetransfer import targets
from edgetransfer.errors import EXIT_USAGE, UnsupportedError
from edgetransfer.exporter.formats import tflm as tflm_format
from edgetransfer.runtime import tflm, tflm_ops


@pytest.fixture(scope="module")
def int8(untrained_exports) -> Path:
    return untrained_exports[("tflite", "int8")].path


@pytest.fixture(scope="module")
def held_out(untrained_run) -> np.ndarray:
    from edgetransfer.evaluation.heldout import held_out

    x = held_out(untrained_run).x
    return x


def _litert(path: Path, reference: bool = False):
    from ai_edge_litert import interpreter as li

    from edgetransfer.runtime.litert import _Session

    kind = li.OpResolverType.BUILTIN_REF if reference else li.OpResolverType.AUTO
    interp = li.Interpreter(model_path=str(path), experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    return _Session(interp)


def test_session_matches_litert_int8(int8, held_out):
    session = tflm.TFLMSession.load(int8)
    assert session.input_spec == _litert(int8).input_spec
    got = session.run(held_out)
    assert got.dtype == np.float32 and got.shape == (len(held_out), 3)
    lite = np.concatenate([_litert(int8).run(held_out[i : i + 1]) for i in range(len(held_out))])
    assert (got.argmax(1) == lite.argmax(1)).all()
    # TFLM's kernels are ports of TFLite's reference kernels: bit-exact against those.
    ref = np.concatenate([_litert(int8, reference=True).run(held_out[i : i + 1]) for i in range(len(held_out))])
    assert np.array_equal(got, ref)


def test_arena_is_the_smallest_that_allocates(int8):
    arena = tflm.measure_arena(int8)
    assert arena > 0
    data = int8.read_bytes()
    assert tflm._interpreter(data, arena)[0] is not None
    assert tflm._interpreter(data, arena - 1024)[0] is None
    with pytest.raises(RuntimeError, match="allocate"):  # the package's own API says the same
        from tflite_micro.python.tflite_micro import runtime

        with tflm._captured_stderr():
            runtime.Interpreter.from_bytes(data, arena_size=arena - 1024)


def test_export_bundle_and_c_source(int8, tmp_path):
    out = tflm_format.export_tflm(int8, tmp_path / "fw")
    assert sorted(p.name for p in (tmp_path / "fw").iterdir()) == sorted(
        [int8.name, "model_data.cc", "model_data.h", "tflm_manifest.json"]
    )
    assert out.flash_bytes == int8.stat().st_size and out.arena_bytes == tflm.measure_arena(int8)
    assert out.ops[0] == "QUANTIZE" and "CONV_2D" in out.ops and "DEPTHWISE_CONV_2D" in out.ops
    cc, h = out.cc.read_text(), out.header.read_text()
    assert "alignas(16) const unsigned char g_model[] = {" in cc
    assert f"const unsigned int g_model_len = {out.flash_bytes};" in cc
    body = cc.split("= {", 1)[1].split("};", 1)[0]
    array = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body))
    assert array == int8.read_bytes()
    assert "MicroMutableOpResolver<kNumOps>" in h and f"kNumOps = {len(out.ops)};" in h
    assert f"#define G_MODEL_TENSOR_ARENA_SIZE {out.arena_bytes}" in h
    assert [
        ln.split("resolver.")[1].split("()")[0] for ln in h.splitlines() if "resolver.Add" in ln
    ] == tflm_format.resolver_calls(list(out.ops))
    if shutil.which("g++"):
        _compile(tmp_path, out)


def _compile(tmp_path: Path, out) -> None:
    """``g++ -fsyntax-only`` against a stub of TFLM's resolver with the methods this module names."""
    stub = tmp_path / "stub" / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
    stub.parent.mkdir(parents=True)
    methods = "\n".join(
        f"  TfLiteStatus {m}() {{ return kTfLiteOk; }}"
        for m in sorted({*tflm_ops.TFLM_BUILTINS.values(), *tflm_ops.TFLM_CUSTOM.values()})
    )
    stub.write_text(
        "#pragma once\nenum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 };\n"
        "namespace tflite {\ntemplate <unsigned int N> class MicroMutableOpResolver {\n public:\n"
        f"{methods}\n}};\n}}\n"
    )
    main = tmp_path / "main.cc"
    main.write_text(
        '#include "model_data.h"\n'
        "alignas(16) static unsigned char arena[g_model_tflm::kTensorArenaSize];\n"
        'static_assert(g_model_tflm::kModelLen > 0, "");\n'
        "int main() { static g_model_tflm::OpResolver r; return g_model_tflm::RegisterOps(r) + arena[0] "
        "+ g_model[0] + (int)g_model_len; }\n"
    )
    res = subprocess.run(
        ["g++", "-std=c++17", "-fsyntax-only", f"-I{stub.parents[3]}", f"-I{out.cc.parent}", str(out.cc), str(main)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_float_models_refused_naming_precision(untrained_exports):
    fp32 = untrained_exports[("tflite", "fp32")].path
    with pytest.raises(UnsupportedError) as e:
        tflm_format.export_tflm(fp32, fp32.parent / "should_not_exist")
    assert e.value.exit_code == EXIT_USAGE and "fp32" in str(e.value) and "full-int8" in str(e.value)
    assert str(fp32) in str(e.value) and not (fp32.parent / "should_not_exist").exists()
    with pytest.raises(UnsupportedError, match="fp32"):
        tflm.measure_arena(fp32)


def _with_op(int8: Path, op: str) -> bytes:
    """``int8`` with its MEAN op code rewritten (object API) to ``op``, a builtin TFLM lacks."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(int8.read_bytes()))
    mean = schema.BuiltinOperator.MEAN
    code = next(c for c in model.operatorCodes if max(c.builtinCode, c.deprecatedBuiltinCode) == mean)
    code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, op)
    return bytes(fbu.convert_object_to_bytearray(model))


def test_unknown_op_refused_before_running(int8, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_with_op(int8, "LSH_PROJECTION"))
    assert "LSH_PROJECTION" not in tflm_ops.TFLM_BUILTINS and "LSH_PROJECTION" in tflm_ops.required_ops(bad)
    calls = (
        lambda: tflm_ops.check_tflm(bad),
        lambda: tflm.measure_arena(bad),
        lambda: tflm.TFLMSession.load(bad),
        lambda: tflm_format.export_tflm(bad, tmp_path / "out"),
    )
    for call in calls:
        with pytest.raises(UnsupportedError, match="LSH_PROJECTION") as e:
            call()
        assert e.value.exit_code == EXIT_USAGE and str(bad) in str(e.value)
    assert not (tmp_path / "out").exists()


def test_profiles_load_with_memory_and_estimate(int8):
    for name, sram, flash in (("stm32h7", 1024, 2048), ("esp32-s3", 512, 16384)):
        prof = targets.get(name)
        assert prof.runtime == "tflm" and prof.precisions == ("int8",) and prof.sources and prof.clock_mhz
        assert (prof.memory.sram_kb, prof.memory.flash_kb) == (sram, flash)
        est = tflm.estimate_latency(int8, prof)
        assert est.provenance == "estimated" and est.p50 > 0 and est.detail["macs"] > 0
    h7 = targets.get("stm32h7")
    assert tflm.fits(400 * 1024, 1024 * 1024, h7)["fits"]
    assert tflm.fits(600 * 1024, 1024, h7)["arena_in"] is None  # past the 512 KB AXI SRAM block
    assert not tflm.fits(1024, 3 * 1024 * 1024, h7)["flash_ok"]
    assert tflm.fits(600 * 1024, 1024, targets.get("esp32-s3"))["arena_in"] == "psram"


def test_registry_functions_are_the_runtime_s(int8, tmp_path):
    from edgetransfer.runtime import spec

    tflm_spec, h7 = spec.get("tflm"), targets.get("stm32h7")
    size = int8.stat().st_size
    assert tflm_spec.measure_memory(int8, size, h7) == tflm.fits(tflm.measure_arena(int8), size, h7)
    assert tflm_spec.estimate_latency(int8, h7).p50 == tflm.estimate_latency(int8, h7).p50
    assert isinstance(tflm_spec.runtime().load(int8), tflm.TFLMSession)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_with_op(int8, "LSH_PROJECTION"))
    with pytest.raises(UnsupportedError, match="LSH_PROJECTION"):
        tflm_spec.require_supported(bad)
    with pytest.raises(UnsupportedError, match="LSH_PROJECTION"):
        tflm_spec.measure_memory(bad, size, h7)
