"""Issue 27: ``edgetransfer quant diagnose`` on tiny exported int8 files (both formats), its record and page."""

from __future__ import annotations

import json
import shutil

import pytest

from edgetransfer import records
from edgetransfer.exporter.quantization.diagnose import layer_of
from edgetransfer.records import QuantDiagnosis


@pytest.fixture(scope="module")
def diagnosed(untrained_exports, tmp_path_factory):
    """{format: (QuantDiagnosis from --json, the HTML page's text)}, one CLI run per format."""
    from click.testing import CliRunner

    from edgetransfer.cli import cli

    out = {}
    for fmt in ("tflite", "onnx"):
        page = tmp_path_factory.mktemp(fmt) / "diagnosis.html"
        args = ["quant", "diagnose", str(untrained_exports[(fmt, "int8")].path), "--json"]
        res = CliRunner().invoke(cli, [*args, "--top", "2", "--images", "4", "--html", str(page)])
        assert res.exit_code == 0, res.stdout + res.stderr
        doc = json.loads(res.stdout)
        out[fmt] = (doc, QuantDiagnosis.from_json(doc), page.read_text())
    return out


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_json_round_trips_through_the_record_worst_first(diagnosed, fmt):
    doc, d, _ = diagnosed[fmt]
    assert records.by_kind(doc["kind"]) is QuantDiagnosis
    assert QuantDiagnosis.from_json(d.to_json()) == d
    assert d.format == fmt and len(d.tensors) >= 5
    added = [t.added_db for t in d.tensors]
    assert added == sorted(added), "worst first: the lowest SNR of the error added first"
    assert {t.op_type for t in d.tensors} & {"CONV_2D", "Conv"}
    named = [t for t in d.tensors if t.layer]
    assert len(named) >= len(d.tensors) // 2, "most tensors map back to a Keras layer"
    names = {n.strip() for t in named for n in t.layer.split(",")}
    assert "project" in names and names & {"stem_conv", "stem_bn"}  # ONNX: the BatchNorm folded into the conv
    assert all(-1 <= t.cosine <= 1 for t in d.tensors)
    assert d.float_accuracy is not None and d.file_accuracy is not None


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_the_top_tensors_get_their_fixes_measured(diagnosed, fmt):
    _, d, _ = diagnosed[fmt]
    assert d.replay == "exact", "the recipe writes the file again byte for byte: the fixes' baseline is FILE"
    assert d.fix_baseline_accuracy is not None
    top = d.tensors[: d.top]
    fixable = [t for t in top if t.fix_float]
    assert fixable, [t.tensor for t in top]
    assert all(t.float_fixed_accuracy is not None for t in fixable), [t.fix_error for t in fixable]
    assert all(t.float_fixed_accuracy is None for t in d.tensors[d.top :]), "only the top are measured"
    if fmt == "onnx":  # 16-bit activations per tensor: ONNX only (the TFLite converter's int16x8 is whole-model)
        assert all(t.a16_fixed_accuracy is not None for t in top if t.fix_a16), [t.fix_error for t in top]
    else:
        assert not any(t.fix_a16 for t in d.tensors)


def test_html_page_has_the_plot_and_the_table(diagnosed):
    for _, d, page in diagnosed.values():
        assert "<title>edgetransfer quant diagnosis</title>" in page
        assert "src='data:image/png;base64," in page
        assert d.tensors[0].op_type in page


def test_text_table_worst_first(invoke, untrained_exports):
    code, out, err = invoke("quant", "diagnose", untrained_exports[("onnx", "int8")].path, "--top", "0", "--rows", "5")
    assert code == 0, err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("#"))
    rows = [line.split() for line in lines[head + 2 : head + 7]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert "accuracy not scored (--top 0)" in out


def test_bad_input_exits_2_naming_file_problem_and_fix(invoke, untrained_exports, tmp_path):
    fp32 = untrained_exports[("tflite", "fp32")].path
    code, out, err = invoke("quant", "diagnose", fp32)
    assert code == 2 and fp32.name in err and "only int8 files" in err and "--precision int8" in err
    bare = tmp_path / "model_int8.onnx"
    shutil.copy(untrained_exports[("onnx", "int8")].path, bare)  # no manifest beside it
    code, out, err = invoke("quant", "diagnose", bare)
    assert code == 2 and str(bare) in err and "manifest.json" in err and "fix:" in err
    code, out, err = invoke("quant", "diagnose", tmp_path / "missing.tflite")
    assert code == 2 and "not found" in err
    theirs = tmp_path / "notes.html"
    theirs.write_text("my notes")
    code, out, err = invoke("quant", "diagnose", untrained_exports[("onnx", "int8")].path, "--html", theirs)
    assert code == 2 and "did not write" in err and theirs.read_text() == "my notes"


def test_layer_names_from_converter_names():
    layers = {"image": 0, "backbone": 1, "stem_conv": 2, "stem_bn": 3, "stem_relu": 4, "dense_1": 5}
    box = frozenset({"backbone"})
    fused = "clf_1/backbone_1/stem_relu_1/Relu6;clf_1/backbone_1/stem_conv_1/convolution"
    assert layer_of(fused, layers, box) == "stem_conv, stem_relu"  # model order, fused ops both named
    assert layer_of("clf_1/dense_1_1/MatMul", layers, box) == "dense_1"
    assert layer_of("Conv__18:0", layers, box) == ""


def test_unmet_budget_error_names_the_worst_tensors(untrained_exports):
    """``export --max-accuracy-drop`` that cannot meet its bound: the doctor's error names the ops adding the
    most error in the file it wrote (quantization.doctor.raise_unmet -> diagnose.unmet_note)."""
    from edgetransfer.exporter.quantization import attempts, doctor

    art = untrained_exports[("onnx", "int8")]
    best = {"attempt": 1, "remedy": "plain int8", "accuracy_drop": 2.0}
    result = attempts.DoctorResult(art, (best,), 1, False, 0.5, 0.9, art.path.with_name("x.recipe.json"))
    with pytest.raises(attempts.AccuracyBudgetError) as info:
        doctor.raise_unmet([result], [art])
    problem = info.value.problem
    assert "diagnosis:" in problem and f"{art.path.name}: the ops adding most error" in problem
    assert "adds" in problem and "dB" in problem and "quant diagnose" in problem


def test_export_that_misses_its_bound_prints_the_diagnosis(invoke, untrained_run, tmp_path, monkeypatch):
    """End to end through ``edgetransfer export``: the plain attempt only, a budget nothing meets (exit 1)."""
    from edgetransfer.exporter.quantization import doctor, remedies

    monkeypatch.setattr(remedies, "A16_STEPS", ())
    monkeypatch.setattr(remedies, "K_STEPS", ())
    monkeypatch.setattr(doctor, "_calibration_remedies", lambda *a: None)
    monkeypatch.setattr(doctor, "check_budget", lambda v: -1.0)  # a budget no attempt meets
    args = ["--format", "onnx", "--precision", "int8", "--calibration-size", "4", "--out", tmp_path / "out"]
    code, out, err = invoke("export", untrained_run.run_dir, *args, "--max-accuracy-drop", "0")
    assert code == 1, err
    assert "diagnosis: model_int8.onnx: the ops adding most error:" in err and "quant diagnose" in err
