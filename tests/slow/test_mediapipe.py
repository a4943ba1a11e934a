"""Round trip with the REAL MediaPipe Tasks ImageClassifier (mediapipe 1.2.2 in its own venv): every TFLite
precision loads, the category names are the class names, and top-1 agrees with edgetransfer's Classifier.

The venv is reused from ``~/.cache/edgetransfer-test-venvs/mediapipe-1.2.2`` (``EDGETRANSFER_VENV_CACHE``
moves it); cache that folder in CI. Skipped only when pip cannot install mediapipe at all.
"""

import glob

import mediapipe_lib as mediapipe_check
import numpy as np
import pytest

from edgetransfer.errors import MissingDependencyError
from edgetransfer.exporter.artifacts import export
from edgetransfer.exporter.quantization import QuantRecipe
from edgetransfer.runtime import Classifier

pytestmark = pytest.mark.slow

RECIPES = [
    QuantRecipe.fp32(),
    QuantRecipe.fp16(),
    QuantRecipe.dynamic(),
    QuantRecipe.int8(calibration_size=12),
    QuantRecipe.int16x8(calibration_size=12),
]


@pytest.fixture(scope="session")
def mediapipe_python():
    try:
        return mediapipe_check.venv_python()
    except MissingDependencyError as exc:
        pytest.skip(f"pip could not install mediapipe=={mediapipe_check.MEDIAPIPE_VERSION}: {exc}")


def test_mediapipe_image_classifier_reads_every_precision(tiny_run, mediapipe_python, tmp_path):
    arts = export(tiny_run, ["tflite"], RECIPES, out=tmp_path / "export")
    assert {a.precision for a in arts} == {"fp32", "fp16", "dynamic", "int8", "int16x8"}
    files = sorted(glob.glob(str(tiny_run.manifest.data.root) + "/*/*.png"))[::3]
    clf0 = Classifier(arts[0].path)
    # The same uint8 pixels for both (decoded and resized once), so only the runtimes can differ.
    pixels = np.stack([np.round(clf0.preprocess(f)[0]).astype(np.uint8) for f in files])
    got = mediapipe_check.classify(mediapipe_python, [a.path for a in arts], pixels)
    for a in arts:
        res = got[a.path]
        assert not res.error, f"MediaPipe refused {a.path.name}: {res.error}"
        assert {n for row in res.categories for _, n, _ in row} == set(tiny_run.classes), a.path
        assert all(n == tiny_run.classes[i] for row in res.categories for i, n, _ in row)
        ours = np.stack([Classifier(a.path).probabilities(x) for x in pixels]).argmax(1)
        assert (np.array(res.top1) == ours).mean() == 1.0, a.path.name
