"""Issue 27: the per-tensor diagnosis of an int8 ONNX file and the 16-bit activation remedy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgetransfer.exporter import formats
from edgetransfer.exporter.artifacts import export
from edgetransfer.exporter.quantization import Calibration, QuantRecipe, attempts, doctor, remedies
from edgetransfer.exporter.quantization.attempts import AccuracyBudgetError
from edgetransfer.exporter.quantization.recipe import check as check_recipe
from edgetransfer.records import ArtifactManifest
from edgetransfer.records.recipe import RecipeFile


@pytest.fixture
def cal():
    return Calibration(np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32), "random", ())


@pytest.mark.slow  # Lite0's 60+ activations from the trained run; the rankers' mechanics run fast in test_quant_doctor
def test_tensor_errors_rank_and_16bit_write(tiny_exports, cal, tmp_path):
    """Every activation gets an SNR; the lowest-SNR tensors kept at 16 bits are written as 16-bit Q/DQ
    (ONNX Runtime lifts the file to opset 21), pass the checker, run, and their own SNR rises."""
    import onnx
    import onnxruntime as ort

    from edgetransfer.exporter.formats import onnx as onnx_format

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
    monkeypatch.setattr(remedies, "A16_STEPS", (2,))
    monkeypatch.setattr(remedies, "K_STEPS", ())
    monkeypatch.setattr(doctor, "_calibration_remedies", lambda *a: None)
    monkeypatch.setattr(doctor, "_option_remedies", lambda *a: None)
    monkeypatch.setattr(doctor.integer, "weight_remedies", lambda *a: None)  # bias correction, learned rounding
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
    assert a16["vs_attempt"] == 1 and isinstance(a16["moved"], bool)  # judged against the plain file
    rows, header = attempts.attempts_table(att)
    assert header[3] == "float/16-bit" and rows[1][3] == "0/2"

    fr = RecipeFile("onnx", QuantRecipe(**a16["recipe"]), tuple(a16["keep_float"]))
    file = tmp_path / "a16.recipe.json"
    file.write_text(json.dumps(fr.to_json()))
    (again,) = export(tiny_run, out=tmp_path / "replay", recipe_file=file)
    m = ArtifactManifest.read(again.path.with_name(again.path.name + ".manifest.json"))
    assert m.recipe["keep_float"] == a16["keep_float"]


# --- issue 27 items 2-4: quantizer options judged by what they move, targets without 16-bit kernels, replay ---


def test_judge_records_a_remedy_that_moved_nothing():
    """The same hits and output SNR: ``moved`` False; a real SNR gain or an interval clear of 0: True."""
    hits = np.array([True] * 90 + [False] * 10)
    base = {"attempt": 1, "status": "ok", "output_snr_db": 16.0}
    same = {"attempt": 2, "status": "ok", "output_snr_db": 16.2}
    attempts.judge(same, base, hits.copy(), hits)
    assert same["moved"] is False and same["accuracy_change_pts"] == [0.0, 0.0, 0.0] and same["vs_attempt"] == 1
    one = hits.copy()
    one[95] = True  # one image more: within the interval, and the SNR did not move
    single = {"attempt": 3, "status": "ok", "output_snr_db": 16.1}
    attempts.judge(single, base, one, hits)
    lo, hi = single["accuracy_change_pts"][1:]
    assert single["moved"] is False and lo < 0 < hi
    better = {"attempt": 4, "status": "ok", "output_snr_db": 19.0}
    attempts.judge(better, base, hits.copy(), hits)
    assert better["moved"] is True and better["snr_change_db"] == 3.0
    fixed = np.ones(100, bool)
    many = {"attempt": 5, "status": "ok", "output_snr_db": 16.0}
    attempts.judge(many, base, fixed, hits)  # ten images fixed, none broken: the interval is clear of 0
    assert many["moved"] is True and many["accuracy_change_pts"][1] > 0


def test_16bit_activations_not_offered_where_a_target_cannot_run_them():
    from edgetransfer import targets

    assert doctor.refuses_activation16([targets.get("host-cpu")]) == ""  # lists int16x8
    why = doctor.refuses_activation16([targets.get("host-cpu"), targets.get("edgetpu"), targets.get("stm32h7")])
    assert "edgetpu" in why and "stm32h7" in why and "host-cpu" not in why


def test_quantizer_options_are_a_format_capability():
    from edgetransfer.errors import UnsupportedError

    onnx_options = formats.get("onnx").quantizer_options
    assert "float_bias" in onnx_options and "nncf_bias_correction" in onnx_options
    r = QuantRecipe.int8(io="float32", calibration_size=6)
    from dataclasses import asdict, replace

    opt = replace(r, options=("float_bias",))
    check_recipe(opt, "onnx")
    assert QuantRecipe(**json.loads(json.dumps(asdict(opt)))) == opt  # a JSON list reads back equal
    with pytest.raises(UnsupportedError, match="no quantizer option"):
        check_recipe(replace(r, options=("float_bias",)), "tflite")  # the TFLite converter has none
    with pytest.raises(UnsupportedError, match="no quantizer option"):
        check_recipe(replace(r, options=("bogus",)), "onnx")
    with pytest.raises(UnsupportedError, match="int8 options"):
        QuantRecipe("fp16", options=("float_bias",))


@pytest.mark.slow  # needs the trained Lite0's biased convolutions; options' refusals run fast above
def test_onnx_options_change_what_they_say_and_write_the_same_bytes_twice(tiny_exports, cal, tmp_path):
    """Each option is visible in the file (float biases: no int32 bias; exact input scale: scale 1; float
    output: no Q/DQ after Softmax), runs, and the same recipe writes the same bytes again (replay)."""
    from dataclasses import replace

    import onnx
    import onnxruntime as ort

    from edgetransfer.exporter.formats import onnx as onnx_format

    src = SimpleNamespace(path=tiny_exports[("onnx", "fp32")].path, layout="nhwc")
    meta = {"labels": ["a", "b", "c"], "normalization": {}}
    base = QuantRecipe.int8(io="float32", calibration_size=6)

    def write(options, name):
        out = tmp_path / name
        onnx_format.write(src, replace(base, options=options), cal, meta, out)
        ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        return out, onnx.load(str(out))

    _, plain = write((), "plain.onnx")
    int32 = [i for i in plain.graph.initializer if i.data_type == onnx.TensorProto.INT32]
    assert int32, "plain int8 quantizes biases to int32"
    path, fb = write(("float_bias",), "float_bias.onnx")
    assert not [i for i in fb.graph.initializer if i.data_type == onnx.TensorProto.INT32]
    again, _ = write(("float_bias",), "again.onnx")
    assert path.read_bytes() == again.read_bytes()
    _, ex = write(("exact_input_scale",), "exact.onnx")
    first_q = next(n for n in ex.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == ex.graph.input[0].name)
    scale = next(i for i in ex.graph.initializer if i.name == first_q.input[1])
    assert onnx.numpy_helper.to_array(scale).item() == 1.0
    bc_path, bc = write(("bias_correction",), "bias_correction.onnx")
    assert bc_path.read_bytes() == write(("bias_correction",), "bias_correction2.onnx")[0].read_bytes()
    before = {i.name: onnx.numpy_helper.to_array(i) for i in int32}
    after = {i.name: onnx.numpy_helper.to_array(i) for i in bc.graph.initializer if i.name in before}
    moved = [n for n in before if not np.array_equal(before[n], after[n])]
    assert moved, "empirical bias correction shifts the int32 biases"
    _, fo = write(("float_output",), "float_output.onnx")
    softmax = next(n for n in fo.graph.node if n.op_type == "Softmax")
    assert not [n for n in fo.graph.node if n.op_type == "QuantizeLinear" and softmax.output[0] in n.input]


@pytest.mark.slow
def test_doctor_options_stage_judged_and_target_skips_16bit(tiny_run, tmp_path, monkeypatch):
    """With an unreachable budget: each option is one attempt judged against the plain file (``moved``
    recorded), the chosen recipe replays its options, and for an Edge TPU target no 16-bit attempt is made."""
    from edgetransfer import targets

    monkeypatch.setattr(remedies, "MAX_OPTION_ATTEMPTS", 2)
    monkeypatch.setattr(remedies, "A16_STEPS", (2,))
    monkeypatch.setattr(remedies, "K_STEPS", ())
    monkeypatch.setattr(doctor, "_calibration_remedies", lambda *a: None)
    monkeypatch.setattr(doctor.integer, "weight_remedies", lambda *a: None)  # bias correction, learned rounding
    # edgetpu is integer-only now (its own ladder: tests/unit/exporter/test_quant_integer.py); here only its
    # missing int16x8 kernels are under test
    monkeypatch.setattr(doctor, "integer_only_targets", lambda targets: "")
    monkeypatch.setattr(doctor, "check_budget", lambda v: -1.0)  # a budget no attempt meets
    with pytest.raises(AccuracyBudgetError) as info:
        export(tiny_run, ["onnx"], [QuantRecipe.int8(calibration_size=8)], out=tmp_path / "a", max_accuracy_drop=0,
               targets=[targets.get("edgetpu")])  # fmt: skip
    (art,) = info.value.artifacts
    att = art.manifest.attempts
    names = formats.get("onnx").quantizer_options[:2]
    options = [a for a in att if a["remedy"].startswith("option ")]
    assert att[0]["remedy"] == "plain int8" and {a["remedy"].split()[1] for a in options} == set(names)
    assert att[-1]["remedy"] == "16-bit activations" and len(att) == len(options) + 2
    for a in options:
        assert a["recipe"]["options"][-1] in names
        if a["status"] == "ok":
            assert isinstance(a["moved"], bool) and a["vs_attempt"] >= 1 and len(a["accuracy_change_pts"]) == 3
        else:  # e.g. an option that does not combine with one kept before: tried alone next
            assert a["error"] and options[options.index(a) + 1]["remedy"].endswith("alone")
    assert any(a["status"] == "ok" for a in options)
    assert att[-1]["status"] == "skipped" and "edgetpu" in att[-1]["error"]
    assert not any(k.startswith("a16:") for a in att for k in a["keep_float"])
    rows, _ = attempts.attempts_table(att)
    assert rows[-1][-1] == "skipped"

    recipe = art.path.with_name(art.path.name + ".recipe.json")
    (again,) = export(tiny_run, out=tmp_path / "replay", recipe_file=recipe)
    assert again.manifest.recipe == art.manifest.recipe
    assert again.manifest.sha256 == art.manifest.sha256  # the same options, calibration, converter: same bytes


@pytest.mark.slow  # six conversions of the trained Lite0: onnxslim's name choices need its fused blocks
def test_the_same_model_converts_to_the_same_onnx_names_every_time(tiny_run, tmp_path):
    """onnxslim picks among equal names (a fused Conv's output, a deduplicated Clip constant) differently
    from one conversion to the next in one process; a recipe's node and tensor names must name the same
    things on replay, so every conversion gives the same nodes, edges and initializer names."""
    import onnx

    from edgetransfer.exporter.formats import onnx as onnx_format

    model = tiny_run.load_model()
    graphs = []
    for i in range(6):
        src = onnx_format.Source(model, tiny_run.input_size, "nhwc", _mkdir(tmp_path / str(i)))
        g = onnx.load(str(src.path)).graph
        graphs.append(
            ([(n.name, tuple(n.input), tuple(n.output)) for n in g.node], sorted(i.name for i in g.initializer))
        )
    assert all(g == graphs[0] for g in graphs[1:])


def _mkdir(p):
    p.mkdir(parents=True)
    return p
