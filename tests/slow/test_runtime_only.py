"""The app side installs and runs with only the `runtime` extra: no TensorFlow in that venv.

Slow (creates a venv and installs LiteRT + ONNX Runtime from the package index).
"""

import json
import subprocess
import venv

import pytest
from conftest import REPO, write_image

CLASSIFY = r"""
import json, sys, importlib.util
from edgetransfer.runtime import Classifier
assert importlib.util.find_spec("tensorflow") is None, "tensorflow must not be installed here"
out = {}
for model in sys.argv[2:]:
    clf = Classifier(model)
    out[model] = clf.classify(sys.argv[1], top=3)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    env = tmp_path_factory.mktemp("rtvenv") / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    res = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", f"{REPO}[runtime]"], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return py


@pytest.mark.slow
def test_runtime_extra_alone_classifies_real_images(runtime_venv, tiny_exports, tmp_path):
    red = write_image(tmp_path / "red.jpg", size=(50, 40), color=(220, 40, 40))
    models = [str(tiny_exports[("tflite", "int8")].path), str(tiny_exports[("onnx", "fp32")].path)]
    res = subprocess.run(
        [str(runtime_venv), "-c", CLASSIFY, str(red), *models],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for model in models:
        assert out[model][0][0] == "red", out


@pytest.mark.slow
def test_runner_target_measures_through_a_command(runtime_venv, tiny_exports, tiny_run, tmp_path):
    from edgetransfer.flows.validate import validate

    tdir = tmp_path / "targets"
    tdir.mkdir()
    (tdir / "local-device.yaml").write_text(
        "name: local-device\ndescription: the runtime-only venv standing in for a device\nruntime: litert\n"
        "formats: [tflite]\nprecisions: [fp32, int8]\nmeasure: runner\nthreads: 1\n"
        f'runner: "{runtime_venv} -m edgetransfer.runtime bench {{model}} --threads {{threads}} --budget-s 0.3 --json"\n'
        "sources: [test]\n"
    )
    rep = validate(
        [tiny_exports[("tflite", "int8")].path],
        tiny_run.manifest.data.root,
        ["local-device"],
        targets_dir=tdir,
        budget_s=0.2,
    )
    lat = rep.records[0].latency
    assert (
        lat.provenance == "on-device"  # measured on the (stand-in) device by its runner, not here
        and lat.host["runner"] == "command"
        and lat.runs >= 20
        and lat.threads == 1
        and lat.host["runtime"].startswith("ai_edge_litert")
    )


@pytest.mark.slow
def test_accuracy_check_with_only_the_runtime_extra(runtime_venv, untrained_exports):
    """Issue #39 item 5: the float reference stored with the export lets `check --max-accuracy-drop` run where
    TensorFlow is not installed, with the same drop the full environment computes with Keras."""
    art = untrained_exports[("tflite", "int8")]
    cmd = [str(runtime_venv), "-m", "edgetransfer", "check", str(art.path), "--max-accuracy-drop", "100", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=art.path.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    drop = next(c for c in json.loads(res.stdout)["checks"] if c["name"] == "accuracy_drop")["figure"]
    from edgetransfer.evaluation.accuracy import Evaluator

    keras = Evaluator(art.run()).scores(art, __import__("edgetransfer").targets.get("host-cpu"))[0].drop
    assert drop == pytest.approx(keras, abs=1e-3)
