"""`edgetransfer run PIPELINE.yaml`: the whole path from one file, unchanged stages skipped."""

import json

import pytest
from conftest import make_folder

from edgetransfer.records import PipelineState


def _pipeline(tmp_path, extra: str = "") -> str:
    make_folder(tmp_path / "imgs", {"red": 8, "green": 8, "blue": 8}, size=(36, 36))
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""
data: imgs
out: out
train: {{backbone: efficientnet_lite0, image_size: 32, workflow: features, epochs: 10, learning_rate: 0.01,
        batch_size: 8, val_split: 0.34}}
export: {{formats: [tflite], precisions: [fp32, int8], calibration_size: 10}}
validate: {{targets: [host-cpu, pixel4-cpu], budget_s: 0.2}}
check: {{artifact: model_int8_iouint8.tflite, target: host-cpu, max_size_mb: 10, max_accuracy_drop: 100}}
{extra}""")
    return path


@pytest.mark.slow
def test_run_pipeline_then_skip_unchanged_stages(invoke, tmp_path):
    path = _pipeline(tmp_path)
    code, out, err = invoke("run", path, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["skipped"] == [] and first["verdict"]["status"] == "passed"
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "run" / "model.keras").exists()
    state = tmp_path / "out" / "pipeline-state.json"
    assert PipelineState.read(state).train and PipelineState.read(state).export
    old = {k: v for k, v in json.loads(state.read_text()).items() if k not in ("kind", "schema")}
    state.write_text(json.dumps(old))  # as the version before records wrote it: still honoured
    code, out, _ = invoke("run", path, "--json")
    assert code == 0 and json.loads(out)["skipped"] == ["train", "export"]


@pytest.mark.slow
def test_failed_budget_stops_with_exit_1(invoke, tmp_path):
    path = _pipeline(tmp_path)
    text = path.read_text().replace("max_size_mb: 10", "max_size_mb: 0.1")
    path.write_text(text)
    code, _, _ = invoke("run", path)
    assert code == 1


def test_unknown_key_in_pipeline(invoke, tmp_path):
    path = _pipeline(tmp_path, extra="exprot: {}\n")
    code, _, err = invoke("run", path)
    assert code == 2 and "unknown key 'exprot'" in err and "pipeline.yaml" in err


@pytest.mark.slow
def test_quickstart_end_to_end(invoke, tmp_path):
    code, out, err = invoke("quickstart", "--out", tmp_path / "qs", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["val_accuracy"] > 0.9 and res["verdict"]["status"] == "passed"
    assert {a["format"] for a in res["artifacts"]} == {"tflite", "onnx"} and len(res["artifacts"]) == 6
    assert {"host-cpu", "pixel4-cpu"} <= set(res["best"])
    from records_walk import every_json_is_a_record

    kinds = every_json_is_a_record(tmp_path / "qs")
    assert {"edgetransfer.run", "edgetransfer.artifact", "edgetransfer.export", "edgetransfer.validation"} <= set(
        kinds
    ), kinds
