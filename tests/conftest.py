"""Shared fixtures: tiny image folders built on the fly, and the real datasets when present."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

# a worker that dies or hangs fails the run at once, naming its test (tests/worker_watch.py)
pytest_plugins = ["worker_watch"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
STANDINS = REPO / "tests" / "standins"
# Converted weights and graph profiles are cached per run of the suite (fresh on CI), so
# the conversion path runs for real at least once.
os.environ["EDGETRANSFER_CACHE"] = str(REPO / ".pytest_cache" / "edgetransfer")
HYMENOPTERA = REPO.parent / "shared" / "datasets" / "hymenoptera"


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects by marker
def pytest_collection_modifyitems(config, items):
    """Everything under tests/slow/ is in the slow layer, marked or not (trained models, real weights,
    other virtualenvs); tests/unit/<package>/ holds the rest, slow ones marked one by one."""
    slow = REPO / "tests" / "slow"
    for item in items:
        if slow in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)


def write_image(path: Path, *, size=(40, 30), color=(200, 30, 30), mode="RGB", fmt=None, seed=0) -> Path:
    """A small real image file with some texture, so it is not a flat colour."""
    rng = np.random.default_rng(seed)
    base = np.array(color, dtype=np.float32)[None, None, :]
    noise = rng.normal(0, 25, (size[1], size[0], 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def make_folder(root: Path, classes: dict[str, int], *, size=(40, 30)) -> Path:
    """``root/<class>/<i>.png`` with a distinct colour per class (learnable by a tiny model)."""
    palette = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (220, 200, 40), (160, 40, 200)]
    for ci, (name, n) in enumerate(classes.items()):
        for i in range(n):
            write_image(root / name / f"{i:03d}.png", size=size, color=palette[ci % len(palette)], seed=ci * 1000 + i)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Run the CLI; return (exit_code, stdout, stderr)."""
    from edgetransfer.cli import cli

    def _invoke(*args: str):
        res = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return _invoke


@pytest.fixture
def hymenoptera() -> Path:
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"real dataset not found at {HYMENOPTERA} (CI provides ../shared)")
    return HYMENOPTERA


def parse_json(stdout: str):
    return json.loads(stdout)


def jpeg_bytes(size=(64, 48), seed=0) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def shared(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` once per test run, whichever pytest-xdist worker asks first; the others wait on
    a lock and reuse the folder. Each worker built its own copy before: the untrained run and its nine
    exports were half a minute to a minute of every worker's time under load, the trained run
    minutes. The folder is read-only by convention: a test that changes a file copies it first."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    base = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: one basetemp per worker
    folder, done = base / f"shared-{name}", base / f"shared-{name}.done"
    with FileLock(str(base / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.write_text("")
    return folder


def _exports_in(folder: Path) -> dict:
    """{(format, precision): ExportedArtifact} of the files an export wrote into ``folder``."""
    from edgetransfer.exporter.artifacts import ExportedArtifact

    arts = [
        ExportedArtifact.from_manifest(p.with_name(p.name[: -len(".manifest.json")]))
        for p in folder.glob("*.manifest.json")
    ]
    return {(a.format, a.precision): a for a in arts}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real training run: Lite0 with its ImageNet weights at 32 px on three colour classes."""
    from edgetransfer.training import TrainConfig, TrainedModel, train

    def build(root: Path) -> None:
        folder = make_folder(root / "colours", {"red": 10, "green": 10, "blue": 10}, size=(36, 36))
        cfg = TrainConfig(
            backbone="efficientnet_lite0",
            image_size=32,
            workflow="features",
            epochs=15,
            patience=15,
            learning_rate=1e-2,
            batch_size=8,
            val_split=0.3,
        )
        train(folder, cfg, out=root / "run")

    return TrainedModel.from_dir(shared(tmp_path_factory, "tiny", build) / "run")


@pytest.fixture(scope="session")
def tiny_exports(tiny_run, tmp_path_factory):
    """fp32 and int8 TFLite and ONNX files of ``tiny_run``: {(format, precision): artifact}."""
    from edgetransfer.exporter import export
    from edgetransfer.exporter.quantization import QuantRecipe

    def build(out: Path) -> None:
        export(tiny_run, ["tflite", "onnx"], [QuantRecipe.fp32(), QuantRecipe.int8(calibration_size=12)], out=out)

    return _exports_in(shared(tmp_path_factory, "tiny-exports", build))


def _rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 elsewhere, which never triggers a clean-up)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# Keras' clear_session() plus gc.collect() costs 1-2.5 s once TensorFlow holds ~400k objects
# (measured on the 2-core machine under load): after every one of 365 tests that was several
# minutes of the suite. Free only when the process has grown past this (a worker stays near it).
_FREE_ABOVE_BYTES = int(os.environ.get("EDGETRANSFER_TEST_FREE_ABOVE_MB", "2048")) * 2**20


@pytest.fixture(autouse=True)
def _free_keras_graphs():
    """Drop Keras' global graph state when memory has grown: the suite builds ~100 models and
    would otherwise hold them all (over 12 GB by the end of the export matrix)."""
    yield
    import sys

    if "keras" in sys.modules and _rss_bytes() > _FREE_ABOVE_BYTES:
        sys.modules["keras"].backend.clear_session()  # free_memory=True: it runs gc.collect() itself


# -- the fast layer: a tiny untrained run, built in seconds --------------------------------------------------------

TINY_CLASSES = ("blue", "green", "red")


def tiny_keras_model(size: int = 32, n_classes: int = 3, seed: int = 0):
    """A few layers with EfficientNet-Lite's preprocessing in the graph (``Rescaling`` of
    [0, 255] RGB, as every built backbone does), wrapped by the real head builder
    (:func:`edgetransfer.training.model.classifier`): the shape of a real run, untrained."""
    from edgetransfer import _lazy, backbones
    from edgetransfer.training.model import classifier

    keras = _lazy.keras()
    keras.utils.set_random_seed(seed)
    pre = backbones.get("efficientnet_lite0").preprocess
    L = keras.layers
    inp = keras.Input((size, size, 3))
    x = L.Rescaling(1.0 / pre.std[0], offset=-pre.mean[0] / pre.std[0], name="preprocess")(inp)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.Conv2D(16, 1, name="project")(x)
    base = keras.Model(inp, x, name="tiny_backbone")
    model = classifier(base, n_classes, 0.2, size, "tiny_classifier")
    dense = model.get_layer("classes")
    w, b = dense.get_weights()
    dense.set_weights([w * 4.0, b])  # spread the untrained probabilities, so formats can disagree visibly
    return model


def make_split_folder(root: Path, n_train: int = 8, n_val: int = 4, size: int = 32) -> Path:
    """``root/{train,val}/<class>/<i>.png``: a few dozen 32x32 PNGs, one colour per class."""
    make_folder(root / "train", dict.fromkeys(TINY_CLASSES, n_train), size=(size, size))
    make_folder(root / "val", dict.fromkeys(TINY_CLASSES, n_val), size=(size, size))
    return root


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory):
    """A real run folder (``model.keras``, plots, ``manifest.json``) written by the same
    functions ``edgetransfer train`` uses (:func:`rundir.prepare`, ``training._write``,
    :func:`rundir.finalize`) around :func:`tiny_keras_model`: export, validate, check and the
    runtime ``Classifier`` work on it end to end in seconds. Untrained: mechanics only, not accuracy."""
    from edgetransfer.training import TrainedModel

    return TrainedModel.from_dir(shared(tmp_path_factory, "untrained", _write_untrained_run) / "run")


def _write_untrained_run(root: Path) -> None:
    from edgetransfer import backbones, training
    from edgetransfer.training import TrainConfig, rundir
    from edgetransfer.training.config import Plan
    from edgetransfer.training.fit import FitContext, FitResult

    folder = make_split_folder(root / "images")
    cfg = TrainConfig(backbone="efficientnet_lite0", image_size=32, workflow="features", epochs=1, batch_size=8)
    ds, train_files, val_files = training._splits(folder, None, cfg)
    spec = backbones.get(cfg.backbone)
    out = root / "run"
    partial = rundir.prepare(out, False)
    with rundir.locked(partial):
        ctx = FitContext(spec, cfg, 32, len(ds.classes), tuple(train_files), tuple(val_files), partial)
        history = {"loss": [1.1], "accuracy": [0.33], "val_loss": [1.1], "val_accuracy": [0.33]}
        plan = Plan("features", "0", "untrained test model (tests/conftest.py)")
        fit = FitResult(tiny_keras_model(), plan, history, [0], None, "single device (CPU)", len(train_files))
        training._write(ctx, fit, ds, 0.1, False)
    rundir.finalize(partial, out)


@pytest.fixture(scope="session")
def untrained_images(untrained_run) -> tuple[np.ndarray, np.ndarray]:
    """The run's held-out images as [0, 255] float32 NHWC and the Keras model's probabilities."""
    from edgetransfer import images

    files = sorted((Path(untrained_run.manifest.data.root) / "val").rglob("*.png"))
    x = np.stack([images.load_array(f, 32) for f in files]).astype(np.float32)
    return x, np.asarray(untrained_run.load_model()(x, training=False))


UNTRAINED_RECIPES = (
    ("fp32", {}),
    ("fp16", {}),
    ("dynamic", {}),
    ("int8", {"calibration_size": 12}),
    ("int16x8", {"calibration_size": 12}),
)


@pytest.fixture(scope="session")
def untrained_exports(untrained_run, tmp_path_factory):
    """Every file format in every precision of ``untrained_run`` (TFLite x5, ONNX x4), exported
    once per session: {(format, precision): ExportedArtifact}. A superset of ``tiny_exports``'
    keys, for tests of mechanics (files, manifests, runtimes, exit codes), not of accuracy."""
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.quantization import QuantRecipe

    def build(out: Path) -> None:
        export(untrained_run, ["all"], [QuantRecipe.named(p, **kw) for p, kw in UNTRAINED_RECIPES], out=out)

    return _exports_in(shared(tmp_path_factory, "untrained-export", build))


@pytest.fixture
def device(tmp_path, monkeypatch) -> Path:
    """A stand-in Android device (tests/standins): a folder with /tmp, /data/local/tmp and benchmark_model in /data/local/bin."""
    root = tmp_path / "device"
    for d in ("tmp", "data/local/tmp", "data/local/bin"):
        (root / d).mkdir(parents=True)
    for name in ("benchmark_model", "_standin.py"):
        shutil.copy2(STANDINS / name, root / "data/local/bin" / name)
    monkeypatch.setenv("PATH", f"{STANDINS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EDGETRANSFER_STANDIN_ROOT", str(root))
    monkeypatch.setenv("EDGETRANSFER_STANDIN_PYTHON", sys.executable)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("EDGETRANSFER_STANDIN_FAULT", raising=False)
    return root
