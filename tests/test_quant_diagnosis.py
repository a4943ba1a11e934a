"""Issue 27: the per-tensor diagnosis of an int8 ONNX file and the 16-bit activation remedy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgetransfer import formats
from edgetransfer.exporter import export
from edgetransfer.quantization import Calibration, QuantRecipe, doctor
from edgetransfer.quantization.doctor import AccuracyBudgetError
from edgetransfer.records import ArtifactManifest


@pytest.fixture
def cal():
    return Calibration(np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32), "random", ())


def test_tensor_errors_rank_and_16bit_write(tiny_exports, cal, tmp_path):
    """Every activation gets an SNR; the lowest-SNR tensors kept at 16 bits are written as 16-bit Q/DQ
    (ONNX Runtime lifts the file to opset 21), pass the checker, run, and their own SNR rises."""
    import onnx
    import onnxruntime as ort

    from edgetransfer.formats import onnx as onnx_format

    fp32, int8 = tiny_exports[("onnx", "fp32")].path, tiny_exports[("onnx", "int8")].path
    src = SimpleNamespace(path=fp32, layout="nhwc")
    rows = onnx_format.tensor_errors(src, int8, cal, layout="nhwc", images=4)
    assert len(rows) > 20 and {"Conv", "Gemm"} <= {r["op_type"] for r in rows}
    assert all(np.isfinite(r["snr_db"]) for r in rows)
    ranked = formats.get("onnx").activation16_ranker_fn()(src, int8, cal, layout="nhwc", images=4)
    assert ranked and all(r.startswith(onnx_format.A16) for r in ranked)
    snr = {r["tensor"]: r["snr_db"] for r in rows}
    assert [snr[r[len(onnx_format.A16) :]] for r in ranked] == sorted(snr.values())
    assert formats.get("tflite").activation16_ranker_fn() is None  # the converter's int16x8 is whole-model

    out = tmp_path / "a16.onnx"
    meta = {"labels": ["a", "b", "c"], "normalization": {}}
    onnx_format.write(src, QuantRecipe.int8(io="float32", calibration_size=6), cal, meta, out, keep_float=ranked[:4])
    m = onnx.load(str(out))
    zp16 = {i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.UINT16}
    wide = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and set(n.input) & zp16]
    assert wide, "16-bit Q/DQ"
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    after = {r["tensor"]: r["snr_db"] for r in onnx_format.tensor_errors(src, out, cal, layout="nhwc", images=4)}
    fixed = [r[len(onnx_format.A16) :] for r in ranked[:4]]
    assert sum(after[t] for t in fixed) > sum(snr[t] for t in fixed)


@pytest.mark.slow
def test_doctor_records_16bit_remedy_and_replays(tiny_run, tmp_path, monkeypatch):
    """With an unreachable budget the 16-bit step runs, is recorded with its figures, and replays exactly."""
    monkeypatch.setattr(doctor, "A16_STEPS", (2,))
    monkeypatch.setattr(doctor, "K_STEPS", ())
    monkeypatch.setattr(doctor, "_calibration_remedies", lambda *a: None)
    monkeypatch.setattr(doctor, "check_budget", lambda v: -1.0)  # a budget no attempt meets
    with pytest.raises(AccuracyBudgetError) as info:
        export(tiny_run, ["onnx"], [QuantRecipe.int8(calibration_size=8)], out=tmp_path, max_accuracy_drop=0)
    (art,) = info.value.artifacts
    att = art.manifest.attempts
    assert [a["remedy"] for a in att] == ["plain int8", "16-bit activations top-2 low-SNR tensors"]
    a16 = att[1]
    assert a16["status"] == "ok", a16
    assert len(a16["keep_float"]) == 2 and all(k.startswith("a16:") for k in a16["keep_float"])
    assert {"accuracy", "accuracy_drop", "size_bytes", "p50_ms", "output_snr_db"} <= set(a16)
    assert all(isinstance(a["output_snr_db"], float) for a in att)  # the error left, continuous
    assert a16["size_bytes"] <= 1.1 * att[0]["size_bytes"]  # int8 weights: the file hardly grows
    rows, header = doctor.attempts_table(att)
    assert header[3] == "float/16-bit" and rows[1][3] == "0/2"

    fr = doctor.FileRecipe("onnx", QuantRecipe(**a16["recipe"]), tuple(a16["keep_float"]))
    file = tmp_path / "a16.recipe.json"
    file.write_text(json.dumps(fr.to_json()))
    (again,) = export(tiny_run, out=tmp_path / "replay", recipe_file=file)
    m = ArtifactManifest.read(again.path.with_name(again.path.name + ".manifest.json"))
    assert m.recipe["keep_float"] == a16["keep_float"]
