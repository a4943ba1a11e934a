"""The quantization doctor (issue #15): ``export --precision int8 --max-accuracy-drop P``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgetransfer.errors import ConfigError, UnsupportedError
from edgetransfer.exporter.artifacts import export
from edgetransfer.exporter.quantization import QuantRecipe, remedies
from edgetransfer.records import ArtifactManifest
from edgetransfer.records.recipe import RecipeFile


@pytest.fixture
def black_calibration(tmp_path):
    """A deliberately bad calibration set: three black frames (issue #13's collapse)."""
    folder = tmp_path / "black"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["--precision", "int8", "--max-accuracy-drop", "-1"],
        ["--precision", "int8", "--max-accuracy-drop", "half"],
        ["--precision", "int8", "--max-accuracy-drop", "nan"],
        ["--precision", "fp32", "--max-accuracy-drop", "1"],
        ["--precision", "int8", "--max-accuracy-drop", "1", "--data", "/no/such/folder"],
        ["--precision", "int8", "--data", "/no/such/folder"],
    ],
)
@pytest.mark.slow
def test_bad_input_exits_2_before_any_work(invoke, tiny_run, tmp_path, args):
    out = tmp_path / "out"
    code, _, err = invoke("export", tiny_run.run_dir, "--out", out, *args)
    assert code == 2, err
    assert not list(out.glob("model_*")), "nothing is exported before the input is checked"


@pytest.mark.slow
def test_api_refuses_bad_budget_and_float_only(tiny_run, tmp_path):
    with pytest.raises(ConfigError):
        export(tiny_run, ["tflite"], [QuantRecipe.int8()], out=tmp_path, max_accuracy_drop=-0.5)
    with pytest.raises(UnsupportedError):
        export(tiny_run, ["tflite"], [QuantRecipe.fp32()], out=tmp_path, max_accuracy_drop=1.0)
    assert not list(tmp_path.glob("model_*"))


@pytest.mark.slow
def test_unmet_budget_exits_1_with_best_attempt_written(invoke, tiny_run, tmp_path, black_calibration, monkeypatch):
    monkeypatch.setattr(remedies, "K_STEPS", (1,))  # one mixed-precision step keeps the test fast
    out = tmp_path / "out"
    code, stdout, err = invoke(
        "export", tiny_run.run_dir, "--precision", "int8", "--calibration", black_calibration,
        "--calibration-size", "3", "--max-accuracy-drop", "0", "--out", out,
    )  # fmt: skip
    assert code == 1, err
    path = out / "model_int8_iouint8.tflite"
    assert path.is_file() and path.name in err and "best attempt" in err
    assert "plain int8" in stdout and "float top-1" in stdout  # the attempt table
    m = ArtifactManifest.read(path.with_name(path.name + ".manifest.json"))
    assert [a["remedy"] for a in m.attempts][0] == "plain int8"
    assert any(a["keep_float"] for a in m.attempts), "the sensitivity step kept an op in float"
    assert all(not a["met_budget"] for a in m.attempts)
    ok = [a for a in m.attempts if a["status"] == "ok"]
    best = min(ok, key=lambda a: (a["accuracy_drop"], a["p50_ms"]))
    assert m.recipe["keep_float"] if best["keep_float"] else "keep_float" not in m.recipe
    assert m.calibration is not None and m.calibration.count == best["calibration_count"]
    doc = json.loads(path.with_name(path.name + ".recipe.json").read_text())
    assert doc["measured"]["accuracy_drop"] == best["accuracy_drop"] and doc["keep_float"] == best["keep_float"]

    # Replay: the doctor's recipe file, and the mixed-precision attempt's recipe, give the same file recipe.
    mixed = next(a for a in ok if a["keep_float"])
    replays = {"doctor": (path.with_name(path.name + ".recipe.json"), m.recipe)}
    mixed_file = tmp_path / "mixed.recipe.json"
    fr = RecipeFile("tflite", QuantRecipe(**mixed["recipe"]), tuple(mixed["keep_float"]), str(black_calibration))
    mixed_file.write_text(json.dumps(fr.to_json()))
    replays["mixed"] = (mixed_file, {**mixed["recipe"], "keep_float": mixed["keep_float"]})
    for name, (file, want) in replays.items():
        again = tmp_path / f"replay-{name}"
        code, _, err = invoke("export", tiny_run.run_dir, "--recipe", file, "--out", again)
        assert code == 0, err
        r = ArtifactManifest.read(again / "model_int8_iouint8.tflite.manifest.json")
        # a weight remedy's notes in the recipe carry its wall time, which no replay repeats
        assert _timeless(r.recipe) == _timeless(want) and not r.attempts
        if name == "doctor":
            assert r.calibration is not None and m.calibration is not None
            assert r.calibration.count == m.calibration.count
            assert r.sha256 == m.sha256  # the same converter on the same inputs: the same bytes


def _timeless(d):
    """``d`` without its ``seconds`` keys, at any depth."""
    if isinstance(d, dict):
        return {k: _timeless(v) for k, v in d.items() if k != "seconds"}
    return d


@pytest.mark.slow
def test_met_budget_records_attempts_onnx(tiny_run, tmp_path):
    arts = export(tiny_run, ["onnx"], [QuantRecipe.int8(calibration_size=12)], out=tmp_path, max_accuracy_drop=100)
    (a,) = arts
    assert a.path.name == "model_int8.onnx"
    (att,) = a.manifest.attempts
    assert att["status"] == "ok" and att["met_budget"] and att["remedy"] == "plain int8"
    assert {"accuracy", "accuracy_drop", "size_bytes", "p50_ms", "recipe", "keep_float"} <= set(att)
    assert ArtifactManifest.read(a.path.with_name(a.path.name + ".manifest.json")).attempts == a.manifest.attempts


@pytest.mark.slow
def test_recipe_file_errors(tiny_run, tmp_path):
    bad = tmp_path / "bad.recipe.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError):
        export(tiny_run, out=tmp_path, recipe_file=bad)
    with pytest.raises(ConfigError):
        export(tiny_run, out=tmp_path, recipe_file=bad, max_accuracy_drop=1)


@pytest.mark.slow
def test_pipeline_key(tmp_path):
    from edgetransfer.flows.pipeline import Flow

    p = tmp_path / "PIPELINE.yaml"
    p.write_text("data: images\nexport:\n  max_accuracy_drop: 0.5\n")
    assert Flow.from_yaml(p).export.max_accuracy_drop == 0.5
    p.write_text("data: images\nexport:\n  max_accuracy_drop: lots\n")
    with pytest.raises(ConfigError):
        Flow.from_yaml(p)


def test_format_sensitivity_rankers_name_what_keep_float_takes(untrained_exports, tmp_path):
    """The doctor's per-format rankers (``FormatSpec.sensitivity_ranker``), called as the doctor does."""
    from types import SimpleNamespace

    import onnx

    from edgetransfer.exporter import formats
    from edgetransfer.exporter.formats import onnx as onnx_format
    from edgetransfer.exporter.quantization import Calibration

    fp32, int8 = untrained_exports[("onnx", "fp32")].path, untrained_exports[("onnx", "int8")].path
    cal = Calibration(np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32), "random", ())
    rank = formats.get("onnx").sensitivity_ranker_fn()
    ranked = rank(SimpleNamespace(path=fp32), int8, cal, layout="nhwc", images=4, size_allowance=1e9)
    assert ranked and len(set(ranked)) == len(ranked)
    onnx_format.prepare(fp32, tmp_path / "prep.onnx")  # nodes_to_exclude names nodes of this graph
    assert set(ranked) <= {n.name for n in onnx.load(str(tmp_path / "prep.onnx")).graph.node}
    tight = rank(SimpleNamespace(path=fp32), int8, cal, layout="nhwc", images=4, size_allowance=0)
    assert set(tight) <= set(ranked) and len(tight) < len(ranked)  # weighted nodes cost size
