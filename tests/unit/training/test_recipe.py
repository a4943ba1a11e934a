"""The fine-tune recipe (schedule, smoothing, augmentation, smoothed early stopping, manifest),
mixed precision on CPU, and the TF_CONFIG parsing of multi-worker training."""

import json
import logging

import numpy as np
import pytest
from conftest import make_folder

from edgetransfer.errors import ConfigError
from edgetransfer.training import TrainConfig, train
from edgetransfer.training import cluster as cluster_lib

TINY = dict(backbone="efficientnet_lite0", weights="imagenet", image_size=32, batch_size=8, learning_rate=1e-2, seed=1)


@pytest.fixture
def colours(tmp_path):
    return make_folder(tmp_path / "colours", {"red": 12, "green": 12, "blue": 12}, size=(36, 36))


@pytest.mark.slow
def test_fine_tune_recipe_recorded_and_used(colours, tmp_path):
    cfg = TrainConfig(**TINY, workflow="fine-tune", unfreeze="10", epochs=3, fine_tune_epochs=3, val_split=0.34)
    run = train(colours, cfg, out=tmp_path / "run")
    m = run.manifest.to_json()
    recipe = m["config"]["recipe"]
    assert "label_smoothing=0.1" in recipe["loss"] and recipe["optimizer"].startswith("AdamW")
    assert "cosine with 1 warm-up" in recipe["fine_tune"] and "random resized crop" in recipe["augmentation"]
    assert recipe["sources"] and m["config"]["runtime"]["replicas"] == 1
    # the smoothed metric that early stopping watches is in the history, as an EMA of val_accuracy
    raw, ema = m["history"]["val_accuracy"], m["history"]["val_accuracy_smoothed"]
    assert len(ema) == len(raw) and ema[0] == raw[0] and ema[1] == pytest.approx(0.5 * raw[0] + 0.5 * raw[1])
    assert run.val_accuracy > 0.5 and run.load_model().output.shape[-1] == 3


def test_cosine_schedule_warms_up_then_decays():
    from edgetransfer.training.model import cosine_schedule

    lr = cosine_schedule(1e-4, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    values = [float(lr(s)) for s in (0, 5, 10, 30, 50)]
    assert values[0] == 0 and values[1] == pytest.approx(5e-5) and values[2] == pytest.approx(1e-4)
    assert values[2] > values[3] > values[4] and values[4] == pytest.approx(0, abs=1e-9)


def test_photo_augmentation_keeps_shape_and_range():
    import tensorflow as tf

    from edgetransfer.data.tfdata import photo_augmentation

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 3)).astype("float32"))
    y = photo_augmentation(48, seed=0, crop_scale=0.5)(x, training=True)
    assert y.shape == x.shape and float(tf.reduce_min(y)) >= 0 and float(tf.reduce_max(y)) <= 255
    assert not np.allclose(y.numpy(), x.numpy())  # it changed something


def test_recipe_options_validated():
    for bad in (dict(label_smoothing=1.0), dict(lr_schedule="step"), dict(crop_scale=0), dict(worker_timeout=0)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


@pytest.mark.slow
def test_mixed_precision_ignored_on_cpu(colours, tmp_path, caplog):
    import keras

    cfg = TrainConfig(**TINY, workflow="features", epochs=2, val_split=0.34, mixed_precision=True)
    with caplog.at_level(logging.WARNING, logger="edgetransfer"):
        run = train(colours, cfg, out=tmp_path / "run")
    assert "--mixed-precision ignored: no GPU" in caplog.text
    assert keras.mixed_precision.global_policy().name == "float32"
    m = run.manifest.to_json()
    assert m["config"]["mixed_precision"] is True  # what was asked
    assert m["config"]["runtime"]["mixed_precision"] == "ignored (no GPU): float32"  # what ran


def test_tf_config_parsing(monkeypatch):
    def conf(**task):
        cluster = {"chief": ["h0:1"], "worker": ["h1:2", "h2:3"]}
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        return cluster_lib.from_env()

    chief = conf(type="chief", index=0)
    assert chief.is_chief and chief.addresses == ("h0:1", "h1:2", "h2:3") and chief.peers == ("h1:2", "h2:3")
    w = conf(type="worker", index=1)
    assert not w.is_chief and w.me == 2 and w.task == "worker:1"
    with pytest.raises(ConfigError, match="not in the cluster"):
        conf(type="worker", index=5)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        cluster_lib.from_env()
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}})
    )
    assert cluster_lib.from_env() is None  # one worker: nothing to coordinate
    assert cluster_lib.digest({"a": 1, "b": 2}) == cluster_lib.digest({"b": 2, "a": 1})
