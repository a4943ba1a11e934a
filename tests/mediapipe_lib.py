"""Check exported .tflite files with the real MediaPipe Tasks ``ImageClassifier``.

MediaPipe pins its own protobuf / NumPy / OpenCV and ships its own TFLite runtime, so it runs in a separate
virtual environment (made once, reused from a cache folder) and is driven through a subprocess: neither
the toolkit nor the app side imports it. Used by ``tests/slow/test_mediapipe.py`` and
``benchmarks/mediapipe_roundtrip.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetransfer.errors import MissingDependencyError, ToolchainError

MEDIAPIPE_VERSION = "1.2.2"
CACHE = Path(os.environ.get("EDGETRANSFER_VENV_CACHE", Path.home() / ".cache" / "edgetransfer-test-venvs"))

# Runs inside the MediaPipe venv: argv = images.npy, out.json, model paths. One ImageClassifier per model,
# all scores (max_results=-1), the image passed as SRGB at the model's input size (no resize happens).
_SCRIPT = r"""
import json, sys
import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision

images = np.load(sys.argv[1])
out = {}
for path in sys.argv[3:]:
    try:
        opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path), max_results=-1)
        with vision.ImageClassifier.create_from_options(opts) as clf:
            rows = []
            for x in images:
                res = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(x)))
                rows.append([[c.index, c.category_name, float(c.score)] for c in res.classifications[0].categories])
        out[path] = rows
    except Exception as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
json.dump(out, open(sys.argv[2], "w"))
"""


@dataclass(frozen=True)
class MediaPipeResult:
    """What MediaPipe made of one model: per image, ``(index, category_name, score)`` best first, or
    the error it raised when loading the model."""

    path: Path
    categories: tuple[tuple[tuple[int, str | None, float], ...], ...] = ()
    error: str = ""

    @property
    def top1(self) -> list[int]:
        return [c[0][0] for c in self.categories]

    @property
    def top1_names(self) -> list[str | None]:
        return [c[0][1] for c in self.categories]


def venv_python(version: str = MEDIAPIPE_VERSION, root: Path | None = None) -> Path:
    """The Python of a venv with ``mediapipe==version``: reused from ``root`` (default
    ``~/.cache/edgetransfer-test-venvs/mediapipe-<version>``), created with pip where missing.

    Raises:
        MissingDependencyError: the venv could not be made or pip could not install MediaPipe.
    """
    root = Path(root or CACHE / f"mediapipe-{version}")
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    probe = [str(python), "-c", f"import mediapipe as m; assert m.__version__ == {version!r}, m.__version__"]
    if python.is_file() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(root)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"mediapipe=={version}"],
    ]
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode:
            raise MissingDependencyError(
                f"could not install mediapipe=={version}: {res.stderr.strip()[-500:]}",
                path=root,
                fix=f"check that pip can reach PyPI; or build {root} by hand",
            )
    return python


def classify(
    python: Path, models: Sequence[str | Path], images: np.ndarray, *, timeout: float = 1800
) -> dict[Path, MediaPipeResult]:
    """Run MediaPipe's ``ImageClassifier`` on ``images`` (``[N, S, S, 3]`` uint8 RGB at the models' input
    size) for each of ``models``; a model MediaPipe refuses comes back with ``error`` set.

    Raises:
        ToolchainError: the MediaPipe process itself failed (not a model it refused).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, S, S, 3] uint8, got {images.shape} {images.dtype}")
    with tempfile.TemporaryDirectory(prefix="et-mediapipe-") as tmp:
        np.save(Path(tmp) / "images.npy", images)
        out = Path(tmp) / "out.json"
        res = subprocess.run(
            [
                str(python),
                "-c",
                _SCRIPT,
                str(Path(tmp) / "images.npy"),
                str(out),
                *[str(Path(m).resolve()) for m in models],
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode or not out.is_file():
            raise ToolchainError(
                f"MediaPipe failed (exit {res.returncode}): {res.stderr.strip()[-800:]}",
                path=python,
                fix="run the command by hand in that venv to see why",
            )
        raw = json.loads(out.read_text())
    results = {}
    for m in models:
        got = raw[str(Path(m).resolve())]
        results[Path(m)] = (
            MediaPipeResult(Path(m), error=got)
            if isinstance(got, str)
            else MediaPipeResult(Path(m), tuple(tuple((int(i), n, float(s)) for i, n, s in row) for row in got))
        )
    return results
