"""Issue #39 item 5: the float model's held-out predictions travel with the export, so a check with an
accuracy budget needs no TensorFlow (fast tests on the untrained run)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from edgetransfer.evaluation import reference
from edgetransfer.records import ExportIndex

CHILD = r"""
import json, sys
from edgetransfer.flows.check import check
from edgetransfer.records import Budget
v = check(sys.argv[1], "host-cpu", data_dir=sys.argv[2] if len(sys.argv) > 2 else None,
          budget=Budget(accuracy_drop=100.0))
print(json.dumps({"tf": "tensorflow" in sys.modules, "keras": "keras" in sys.modules,
                  "checks": [c.to_json() for c in v.checks], "exit": v.exit_code}))
"""


def _child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_export_stores_the_float_reference_keyed_by_the_data(untrained_exports, untrained_images):
    art = untrained_exports[("tflite", "int8")]
    index = ExportIndex.read(art.path.parent / "manifest.json")
    ref = index.reference
    assert ref is not None and ref.file == "reference.npz" and len(ref.data_digest) == 64
    with np.load(art.path.parent / ref.file, allow_pickle=False) as z:
        probs = z["probs"]
    _, keras_probs = untrained_images  # the Keras model on the same val images, computed here
    assert probs.shape == keras_probs.shape == (ref.images, ref.classes)
    np.testing.assert_allclose(probs, keras_probs, atol=1e-5)


def test_check_with_an_accuracy_budget_loads_no_tensorflow(untrained_exports):
    art = untrained_exports[("tflite", "int8")]
    out = _child(str(art.path))
    acc = next(c for c in out["checks"] if c["name"] == "accuracy_drop")
    assert not out["tf"] and not out["keras"], out
    assert acc["figure"] is not None and out["exit"] == 0


def test_check_on_other_images_falls_back_to_the_float_model(untrained_exports, untrained_run, tmp_path):
    """Another data folder has another digest: the stored reference is not used (the float model runs)."""
    art = untrained_exports[("onnx", "fp32")]
    other = tmp_path / "other"
    shutil.copytree(untrained_run.manifest.data.root, other)
    victim = sorted((other / "val").rglob("*.png"))[0]
    victim.write_bytes(sorted((other / "val").rglob("*.png"))[-1].read_bytes())  # one file's content changed
    out = _child(str(art.path), str(other))
    assert out["tf"], "a reference made on other images must not be used"


def test_a_damaged_or_foreign_reference_is_not_used(untrained_exports, untrained_run, tmp_path):
    from edgetransfer.evaluation.heldout import held_out

    art = untrained_exports[("tflite", "fp32")]
    ho = held_out(untrained_run)
    found = reference.find(art.path, ho, 3)
    assert found is not None and found[0].shape == (len(ho.y), 3)
    copy = tmp_path / "exp"
    shutil.copytree(art.path.parent, copy)
    with open(copy / "reference.npz", "wb") as fh:
        np.savez(fh, probs=np.zeros((2, 3), np.float32), labels=np.zeros(2, np.int64))  # wrong shape
    assert reference.find(copy / art.path.name, ho, 3) is None
    (copy / "reference.npz").write_bytes(b"not a zip")
    assert reference.find(copy / art.path.name, ho, 3) is None
    doc = json.loads((copy / "manifest.json").read_text())
    del doc["reference"]  # an export made before references were stored
    (copy / "manifest.json").write_text(json.dumps(doc))
    assert ExportIndex.read(copy / "manifest.json").reference is None
    assert reference.find(copy / art.path.name, ho, 3) is None


@pytest.mark.parametrize("name", ["reference.npz"])
def test_reference_file_respects_the_umask(untrained_exports, name):
    mode = (untrained_exports[("tflite", "fp32")].path.parent / name).stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
