"""``edgetransfer import``: a model trained the way the Keras transfer-learning guide teaches, or a
.tflite from the TF converter with TFLite Metadata, becomes a run that export / validate read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_folder

SIZE = 64
CLASSES = {"cats": 10, "dogs": 10}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    # square images at the input size: every resize policy leaves them as they are
    return make_folder(tmp_path_factory.mktemp("data") / "pets", CLASSES, size=(SIZE, SIZE))


def _xy(folder: Path):
    from edgetransfer import images

    files = sorted(folder.rglob("*.png"))
    x = np.stack([images.load_array(f, SIZE, "stretch") for f in files]).astype("float32")
    y = np.array([sorted(CLASSES).index(f.parent.name) for f in files])
    return x, y


# preset -> (the keras.applications preprocess_input the user calls, head activation, units)
_USER = {
    "tf": ("mobilenet_v2", None, 2),  # logits, SparseCategoricalCrossentropy(from_logits=True)
    "torch": ("densenet", "softmax", 2),
    "caffe": ("resnet50", None, 1),  # the guide's binary head: Dense(1) logits
}


def _preprocess_fn(preset: str):
    import keras

    return getattr(keras.applications, _USER[preset][0]).preprocess_input


def _user_model(preset: str, folder: Path, out: Path):
    """The guide's model: a keras.applications base (weights=None here: no internet), the application's own
    preprocess_input applied by the user before fit, pooling + dense head, a few steps of fit."""
    import keras

    keras.utils.set_random_seed(0)
    _, act, units = _USER[preset]
    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, alpha=0.35)
    x, y = _xy(folder)
    x_user = _preprocess_fn(preset)(x.copy())
    # Stand-in for ImageNet weights: BatchNorm statistics from one pass over the images (a random base with
    # untouched statistics outputs the same scores for every image, and the equalities below would be empty).
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    base(x_user, training=True)
    base.trainable = False  # the guide's first phase: frozen base, new head
    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.GlobalAveragePooling2D()(base(inp, training=False))
    model = keras.Model(inp, keras.layers.Dense(units, activation=act)(h))
    if units == 1:
        loss, acc = keras.losses.BinaryCrossentropy(from_logits=True), keras.metrics.BinaryAccuracy(threshold=0.0)
    else:
        loss, acc = keras.losses.SparseCategoricalCrossentropy(from_logits=act is None), "accuracy"
    model.compile(keras.optimizers.Adam(1e-2), loss, metrics=[acc])
    model.fit(x_user, y, epochs=5, batch_size=10, verbose=0)
    paths = {}
    for suffix in (".keras", ".h5"):
        paths[suffix] = out / f"{preset}_model{suffix}"
        model.save(paths[suffix])
    return model, paths


class _Models(dict):
    """The user's models, trained on first use (the fast tests need only the 'tf' one)."""

    def __init__(self, folder: Path, out: Path):
        super().__init__()
        self.folder, self.out = folder, out

    def __missing__(self, preset: str):
        self[preset] = _user_model(preset, self.folder, self.out)
        return self[preset]


@pytest.fixture(scope="module")
def user(folder, tmp_path_factory):
    return _Models(folder, tmp_path_factory.mktemp("user"))


def _expected(model, preset: str, x: np.ndarray) -> np.ndarray:
    """The original model's probabilities with the user's own preprocessing."""
    y = np.asarray(model.predict(_preprocess_fn(preset)(x.copy()), verbose=0), np.float64)
    _, act, units = _USER[preset]
    if units == 1:
        p = 1 / (1 + np.exp(-y))
        return np.concatenate([1 - p, p], axis=1)
    if act is None:
        e = np.exp(y - y.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return y


@pytest.mark.slow  # trains a MobileNetV2 per preset; the fast layer imports a small model (test_a_model_that_normalises_itself)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("preset", ["tf", "torch", "caffe"])
def test_import_matches_the_original(preset, suffix, user, folder, tmp_path):
    from edgetransfer import import_model

    model, paths = user[preset]
    res = import_model(paths[suffix], folder, preprocess=preset, out=tmp_path / "run")
    run = res.run
    m = run.manifest
    assert m.backbone == f"imported:{paths[suffix].name}" and m.input_size == SIZE
    assert m.classes == tuple(sorted(CLASSES)) and m.files["model"] == "model.keras"
    assert m.preprocess["preset"] == preset and m.preprocess["channel_order"] == (
        "BGR" if preset == "caffe" else "RGB"
    )
    assert res.output == {"tf": "logits", "torch": "probabilities", "caffe": "binary_logits"}[preset]
    x, y = _xy(folder)
    got = run.load_model().predict(x, verbose=0)  # RGB [0, 255] in, probabilities out
    want = _expected(model, preset, x)
    assert np.ptp(want[:, 1]) > 0.1  # scores that vary per image: the equality says something
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(got.sum(1), 1, atol=1e-5)
    # the accuracy the run records is Keras' own evaluate on the same images with the user's preprocessing
    keras_acc = model.evaluate(_preprocess_fn(preset)(x.copy()), y, verbose=0)[1]
    assert abs(m.metrics.val_accuracy - keras_acc) <= 1e-6
    assert m.metrics.val_images == len(y) == 20


def test_refusals(folder, tmp_path, invoke):
    import keras

    from edgetransfer import ConfigError, UnsafeFileError, import_model

    def save(model, name):
        model.save(tmp_path / name)
        return tmp_path / name

    a, b = keras.Input((SIZE, SIZE, 3)), keras.Input((SIZE, SIZE, 3))
    pool = keras.layers.GlobalAveragePooling2D()
    two_in = save(keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Add()([pool(a), pool(b)]))), "two_in.keras")
    two_out = save(keras.Model(a, [keras.layers.Dense(2)(pool(a)), keras.layers.Dense(2)(pool(a))]), "two_out.keras")
    vec = keras.Input((10,))
    tabular = save(keras.Model(vec, keras.layers.Dense(2)(vec)), "tabular.keras")
    three = save(keras.Model(a, keras.layers.Dense(3, activation="softmax")(pool(a))), "three.keras")
    anysize = keras.Input((None, None, 3))
    dynamic = save(keras.Model(anysize, keras.layers.Dense(2)(pool(anysize))), "dynamic.keras")
    lam = save(keras.Model(a, keras.layers.Lambda(lambda t: t[:, :2])(pool(a))), "lambda.keras")
    cases = [
        (two_in, {}, "2 inputs"),
        (two_out, {}, "2 outputs"),
        (tabular, {}, "not a batch of RGB images"),
        (three, {}, "outputs 3 scores per image, but there are 2 labels"),
        (dynamic, {}, "--image-size"),
        (three, {"image_size": 32}, f"--image-size 32, but three.keras takes {SIZE}x{SIZE}"),
    ]
    for path, kw, text in cases:
        with pytest.raises(ConfigError) as e:
            import_model(path, folder, preprocess="tf", out=tmp_path / "r", **kw)
        assert text in e.value.render() and path.name in e.value.render(), e.value.render()
        assert e.value.fix
    with pytest.raises(UnsafeFileError, match="Lambda"):
        import_model(lam, folder, preprocess="tf", out=tmp_path / "r")
    with pytest.raises(ConfigError, match="which preprocessing"):
        import_model(three, folder, out=tmp_path / "r")
    # a dynamic-size model imports with --image-size
    assert (
        import_model(dynamic, folder, preprocess="none", image_size=SIZE, out=tmp_path / "dyn").run.input_size == SIZE
    )
    # through the command line: exit 2, naming the model, what was found and what to pass
    code, _, err = invoke("import", two_in, "--data", folder, "--preprocess", "tf", "--out", tmp_path / "r")
    assert code == 2 and "two_in.keras has 2 inputs" in err and "fix:" in err
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    code, _, err = invoke(
        "import", three, "--data", folder, "--labels", labels, "--preprocess", "tf", "--out", tmp_path / "r"
    )
    assert code == 2 and "differ from the class folders" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_preprocess_specs():
    from edgetransfer import ConfigError
    from edgetransfer.flows.importer import PRESETS, parse_preprocess

    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    spec = parse_preprocess("mean=123.675,116.28,103.53,std=58.395,57.12,57.375")
    assert np.allclose(spec.apply(x), PRESETS["torch"].apply(x), atol=1e-6)
    assert np.allclose(parse_preprocess("scale=1/127.5, offset=-1").apply(x), x / 127.5 - 1, atol=1e-6)
    caffe = parse_preprocess("mean=103.939,116.779,123.68,order=bgr")
    assert np.allclose(caffe.apply(x), PRESETS["caffe"].apply(x))
    assert PRESETS["none"].identity and PRESETS["efficientnet"].identity
    for bad, text in [("imagenet", "unknown --preprocess"), ("mean=1,2", "2 values"), ("scale=0", "erases")]:
        with pytest.raises(ConfigError, match=text):
            parse_preprocess(bad)


@pytest.mark.slow  # the trained MobileNetV2 of test_import_matches_the_original
def test_cli_json(user, folder, tmp_path, invoke):
    _, paths = user["tf"]
    code, out, _ = invoke(
        "import", paths[".keras"], "--data", folder, "--preprocess", "tf", "--out", tmp_path / "run", "--json"
    )
    assert code == 0, out
    doc = json.loads(out)
    assert doc["output"] == "logits" and doc["float_model"] == "model.keras" and doc["held_out"]["images"] == 20


@pytest.fixture(scope="module")
def converted(user) -> bytes:
    """The user's 'tf' model through the TF converter (once for the module)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(user["tf"][0]).convert()


def _foreign_tflite(flat: bytes, tmp_path: Path, *, metadata: bool) -> Path:
    """A .tflite written by the TF converter from the user's model (which takes 'tf'-normalised input),
    with the standard TFLite Metadata (NormalizationOptions 127.5 / 127.5, labels.txt) and no edgetransfer.json."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    from edgetransfer.exporter.formats import tflite_metadata as tm

    path = tmp_path / ("with_metadata.tflite" if metadata else "bare.tflite")
    if not metadata:
        path.write_bytes(flat)
        return path
    meta = {
        "edgetransfer": "0",
        "backbone": "other tool",
        "precision": "fp32",
        "labels": sorted(CLASSES),
        "input": {"size": SIZE, "dtype": "float32", "range": [0, 255]},
        "normalization": {"mean": [127.5] * 3, "std": [127.5] * 3},
    }
    buf = tm.build(
        meta, input_name="image", output_name="probabilities", labels_name="labels.txt", json_name="about.json"
    )
    fb = fbu.read_model_from_bytearray(bytearray(flat))
    tm.name_io(fb, "image", "probabilities")
    files = {"labels.txt": "\n".join(sorted(CLASSES)).encode() + b"\n", "about.json": b"{}"}
    path.write_bytes(tm.attach(fb, buf, files))
    return path


@pytest.mark.slow  # the trained MobileNetV2 of test_import_matches_the_original
def test_foreign_tflite_with_metadata(user, converted, folder, tmp_path):
    from edgetransfer import import_model
    from edgetransfer.exporter.artifacts import ExportedArtifact
    from edgetransfer.flows.importer import to_model_input
    from edgetransfer.runtime import load_session
    from edgetransfer.runtime.base import read_metadata

    model, _ = user["tf"]
    path = _foreign_tflite(converted, tmp_path, metadata=True)
    assert read_metadata(path) == {}  # not ours: only the standard TFLite Metadata names its labels
    res = import_model(path, folder, out=tmp_path / "run")  # no --labels, no --preprocess: from the metadata
    m = res.run.manifest
    assert (
        m.classes == tuple(sorted(CLASSES))
        and "model" not in m.files
        and m.config["imported"]["float_reference"] is None
    )
    assert m.config["imported"]["labels_from"] == "TFLite Metadata" and res.output == "logits"
    art = ExportedArtifact.from_manifest(tmp_path / "run" / "export" / path.name)
    assert art.format == "tflite" and art.precision == "fp32" and art.run().run_dir == tmp_path / "run"
    transform = art.metadata["imported"]["input_transform"]
    assert transform["kind"] == "normalize" and not art.metadata["normalization"]["inside_model"]
    x, y = _xy(folder)
    sess = load_session(art.path)
    got = np.concatenate([sess.run(to_model_input(x[i : i + 1], transform)) for i in range(len(x))])
    want = model.predict(_preprocess_fn("tf")(x.copy()), verbose=0)
    assert np.abs(got - want).max() < 1e-4
    keras_acc = model.evaluate(_preprocess_fn("tf")(x.copy()), y, verbose=0)[1]
    assert abs(m.metrics.val_accuracy - keras_acc) <= 1e-6


@pytest.mark.slow  # the trained MobileNetV2 of test_import_matches_the_original
def test_foreign_tflite_without_metadata(converted, folder, tmp_path, invoke):
    from edgetransfer import ConfigError, import_model

    path = _foreign_tflite(converted, tmp_path, metadata=False)
    with pytest.raises(ConfigError, match="says nothing about its input normalisation"):
        import_model(path, folder, out=tmp_path / "run")
    labels = tmp_path / "labels.txt"
    labels.write_text("cats\ndogs\n")
    code, out, err = invoke(
        "import", path, "--data", folder, "--labels", labels, "--preprocess", "tf", "--out", tmp_path / "run", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["float_model"] is None and doc["output"] == "logits"
    man = json.loads((tmp_path / "run" / "export" / "bare.tflite.manifest.json").read_text())
    assert man["kind"] == "edgetransfer.artifact" and man["metadata"]["labels"] == ["cats", "dogs"]


@pytest.mark.slow
def test_export_imported_run(user, folder, tmp_path):
    """The imported run exports to TFLite and ONNX, fp32 and int8; fp32 files match the original."""
    from edgetransfer import QuantRecipe, export, import_model
    from edgetransfer.evaluation.heldout import predict
    from edgetransfer.runtime import load_session

    model, paths = user["caffe"]
    run = import_model(paths[".keras"], folder, preprocess="caffe", out=tmp_path / "run").run
    arts = export(run, ("tflite", "onnx"), (QuantRecipe.fp32(), QuantRecipe.int8()))
    assert sorted((a.format, a.precision) for a in arts) == [
        ("onnx", "fp32"),
        ("onnx", "int8"),
        ("tflite", "fp32"),
        ("tflite", "int8"),
    ]
    x, _ = _xy(folder)
    want = _expected(model, "caffe", x)
    for a in arts:
        assert a.metadata["backbone"] == "imported:caffe_model.keras" and a.metadata["labels"] == ["cats", "dogs"]
        got = predict(load_session(a.path), x, str(a.path))
        if a.precision == "fp32":
            assert np.abs(got - want).max() < 1e-4, a.path
        else:
            assert np.allclose(got.sum(1), 1, atol=0.02)
    # validate: the float reference is the imported model; its accuracy is Keras' own evaluate
    from edgetransfer import validate

    fp32 = next(a for a in arts if a.format == "tflite" and a.precision == "fp32")
    rep = validate([fp32.path], budget_s=0.2)
    x_user, y = _preprocess_fn("caffe")(x.copy()), _xy(folder)[1]
    keras_acc = float(np.mean((model.predict(x_user, verbose=0)[:, 0] > 0).astype(int) == y))
    assert abs(rep.reference.accuracy - keras_acc) <= 1e-6
    assert abs(rep.records[0].accuracy - keras_acc) <= 1e-6
    # our own exported files imported as foreign files: labels and "normalisation inside" from their metadata
    for a in arts:
        if a.format == "onnx" and a.precision == "fp32" or a.format == "tflite" and a.precision == "int8":
            res = import_model(a.path, folder, out=tmp_path / f"foreign_{a.path.name}")
            m = res.run.manifest
            assert m.config["imported"]["input_transform"] == {"kind": "pixels"}
            assert m.config["imported"]["precision"] == a.precision and m.config["imported"]["labels_from"] == (
                "edgetransfer metadata"
            )
            if a.precision == "fp32":
                assert abs(m.metrics.val_accuracy - keras_acc) <= 1e-6


@pytest.mark.slow
def test_check_gates_imported_files(user, folder, tmp_path, invoke):
    """`check` gates an exported file of an imported run (accuracy drop, latency, size) with exit 0 / 1."""
    from edgetransfer import QuantRecipe, export, import_model

    _, paths = user["tf"]
    run = import_model(paths[".h5"], folder, preprocess="tf", out=tmp_path / "run").run
    (art,) = export(run, ("tflite",), (QuantRecipe.fp32(),))
    code, out, err = invoke("check", art.path, "--data", folder, "--max-accuracy-drop", "0.5", "--budget-s", "0.2")
    assert code == 0, out + err
    code, out, err = invoke("check", art.path, "--max-size-mb", "0.001", "--budget-s", "0.2")
    assert code == 1, out + err


@pytest.mark.slow
def test_mediapipe_names_the_classes_of_an_imported_model(user, folder, tmp_path):
    """MediaPipe Tasks' ImageClassifier loads the imported run's TFLite files and names their classes
    (the cached venv of tests/mediapipe_lib.py; skipped where pip cannot install MediaPipe)."""
    import mediapipe_lib as mediapipe_check

    from edgetransfer import QuantRecipe, export, import_model
    from edgetransfer.errors import MissingDependencyError
    from edgetransfer.runtime import Classifier

    try:
        python = mediapipe_check.venv_python()
    except MissingDependencyError as exc:
        pytest.skip(f"pip could not install mediapipe=={mediapipe_check.MEDIAPIPE_VERSION}: {exc}")
    _, paths = user["torch"]
    run = import_model(paths[".keras"], folder, preprocess="torch", out=tmp_path / "run").run
    arts = export(run, ("tflite",), (QuantRecipe.fp32(), QuantRecipe.int8(calibration_size=12)))
    x, _ = _xy(folder)
    pixels = x.astype(np.uint8)
    got = mediapipe_check.classify(python, [a.path for a in arts], pixels)
    for a in arts:
        res = got[a.path]
        assert not res.error, f"MediaPipe refused {a.path.name}: {res.error}"
        assert all(n == run.classes[i] for row in res.categories for i, n, _ in row)
        ours = np.stack([Classifier(a.path).probabilities(p) for p in pixels]).argmax(1)
        assert (np.array(res.top1) == ours).mean() == 1.0, a.path.name


@pytest.mark.slow
def test_foreign_uint8_tflite_takes_raw_pixels(user, folder, tmp_path):
    """A Model Maker-style uint8 file (input quantization encodes [-1, 1], metadata says mean/std 127.5):
    MediaPipe feeds it raw pixels, and so does the imported run (input transform ``raw_quantized``)."""
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    from edgetransfer import import_model
    from edgetransfer.exporter.formats import tflite_metadata as tm

    model, _ = user["tf"]
    x, y = _xy(folder)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([v[None]] for v in _preprocess_fn("tf")(x.copy()))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    fb = fbu.read_model_from_bytearray(bytearray(conv.convert()))
    meta = {
        "edgetransfer": "0",
        "backbone": "other tool",
        "precision": "int8",
        "labels": sorted(CLASSES),
        "input": {"size": SIZE, "dtype": "uint8", "range": [0, 255]},
        "normalization": {"mean": [127.5], "std": [127.5]},
    }
    buf = tm.build(meta, input_name="image", output_name="probabilities", labels_name="labels.txt", json_name="a.json")
    path = tmp_path / "model_maker_style.tflite"
    path.write_bytes(tm.attach(fb, buf, {"labels.txt": b"cats\ndogs\n", "a.json": b"{}"}))
    m = import_model(path, folder, out=tmp_path / "run").run.manifest
    t = m.config["imported"]["input_transform"]
    assert t["kind"] == "raw_quantized" and m.config["imported"]["precision"] == "int8"
    # what MediaPipe does with a uint8 input: the pixels go in as they are
    interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    top1 = []
    for image in x.astype(np.uint8):
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        top1.append(int(interp.get_tensor(out["index"])[0].argmax()))
    assert abs(m.metrics.val_accuracy - float(np.mean(np.array(top1) == y))) <= 1e-6
    float_acc = float(np.mean(model.predict(_preprocess_fn("tf")(x.copy()), verbose=0).argmax(1) == y))
    assert m.metrics.val_accuracy >= float_acc - 0.2  # int8 of a random-feature base: a few images lost


def test_a_model_that_normalises_itself(folder, tmp_path):
    """A model that starts with its own Rescaling (the EfficientNet way) imports with 'none' as is; a
    preset on top of it is said to double the normalisation."""
    import keras

    from edgetransfer import import_model

    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(4, 3, strides=4)(keras.layers.Rescaling(1 / 255.0)(inp))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h)))
    path = tmp_path / "self_normalising.keras"
    model.save(path)
    res = import_model(path, folder, preprocess="none", out=tmp_path / "a")
    assert res.output == "probabilities" and not any("WARNING" in n for n in res.notes)
    x, _ = _xy(folder)
    assert np.abs(res.run.load_model().predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-6
    res = import_model(path, folder, preprocess="tf", out=tmp_path / "b")
    assert any("own Rescaling layer" in n for n in res.notes)
