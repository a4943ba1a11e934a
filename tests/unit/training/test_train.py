"""Training: both workflows learn, auto picks by size, the cache and resume work, bad input exits 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, make_folder, write_image

from edgetransfer import data as data_lib
from edgetransfer.training import TrainConfig, TrainedModel, choose, train

# Real pretrained Lite0 weights (offline) at a tiny input: ~8M MACs an image.
TINY = dict(backbone="efficientnet_lite0", weights="imagenet", image_size=32, batch_size=8, learning_rate=1e-2, seed=1)


@pytest.fixture
def colours(tmp_path):
    return make_folder(tmp_path / "colours", {"red": 12, "green": 12, "blue": 12}, size=(36, 36))


@pytest.mark.slow
def test_features_workflow_beats_chance(colours, tmp_path):
    run = train(
        colours, TrainConfig(**TINY, workflow="features", epochs=20, patience=20, val_split=0.34), out=tmp_path / "run"
    )
    m = run.manifest.to_json()
    assert m["workflow"] == "features" and run.val_accuracy > 0.6  # chance is 1/3
    assert sum(m["feature_cache"].values()) == 36 and m["classes"] == [
        "blue",
        "green",
        "red",
    ]  # 36 images, one view each
    for name in ("model.keras", "manifest.json", "curves.png", "confusion.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert not (tmp_path / "run.partial").exists()
    # the saved model is the whole classifier and reproduces the reported accuracy
    model = TrainedModel.from_dir(tmp_path / "run").load_model()
    assert model.output.shape[-1] == 3 and model.input.shape[1] == 32
    assert m["data"]["fingerprint"] and m["versions"]["keras"] and m["preprocess"]["mean"]
    # the reported metrics come from the head on the cached features: the whole model on the images agrees
    from edgetransfer.training.fit import predict_files

    ds = data_lib.load(colours, val_split=0.34, seed=TINY["seed"])
    val = ds.split("val")
    probs = predict_files(model, val, 32, run.manifest.resize_policy)
    labels = np.array([f.label for f in val])
    assert len(val) == m["metrics"]["val_images"]
    assert np.mean(probs.argmax(1) == labels) == pytest.approx(run.val_accuracy)


@pytest.mark.slow
def test_fine_tune_workflow_two_phases(colours, tmp_path, invoke):
    code, out, err = invoke(
        "train",
        "--data",
        colours,
        "--backbone",
        "efficientnet_lite0",
        "--image-size",
        "32",
        "--workflow",
        "fine-tune",
        "--unfreeze",
        "12",
        "--epochs",
        "6",
        "--fine-tune-epochs",
        "3",
        "--batch-size",
        "8",
        "--learning-rate",
        "0.01",
        "--val-split",
        "0.34",
        "--out",
        tmp_path / "ft",
        "--json",
    )
    assert code == 0, err
    res = json.loads(out)
    assert {"run_dir", "workflow", "val_accuracy", "train_seconds"} <= set(res)
    assert res["workflow"] == "fine-tune" and res["val_accuracy"] > 0.5  # chance is 1/3
    m = TrainedModel.from_dir(res["run_dir"]).manifest.to_json()
    assert m["unfreeze"] == "12" and len(m["phase_starts"]) == 2 and m["phase_starts"][1] >= 1
    assert len(m["history"]["loss"]) > m["phase_starts"][1]  # the fine-tune phase ran


@pytest.mark.slow
def test_fine_tune_same_seed_same_model(tmp_path):
    """The augmentation's random numbers are drawn in batch order, so a seed gives one model
    (a parallel map drew them in thread order: the losses differed from the first epoch)."""
    data = make_folder(tmp_path / "colours", {"red": 24, "green": 24, "blue": 24}, size=(36, 36))
    cfg = TrainConfig(**TINY, workflow="fine-tune", unfreeze="12", epochs=1, fine_tune_epochs=1, val_split=0.34)
    a, b = (train(data, cfg, out=tmp_path / name).manifest.to_json()["history"] for name in ("a", "b"))
    assert a["loss"] == b["loss"] and a["val_loss"] == b["val_loss"]


@pytest.mark.parametrize(
    "n,workflow,depth",
    [
        (300, "features", "0"),
        (1_000, "features", "0"),
        (5_000, "fine-tune", "40"),
        (20_000, "fine-tune", "80"),
        (60_000, "fine-tune", "all"),
    ],
)
def test_auto_choice_by_data_size(n, workflow, depth):
    plan = choose(n, TrainConfig(), base_layers=200, last_blocks=40)
    assert (plan.workflow, plan.unfreeze) == (workflow, depth) and f"{n:,}" in plan.reason


def test_explicit_choices_override_auto():
    assert choose(300, TrainConfig(workflow="fine-tune", unfreeze="all"), 200, 40).unfreeze == "all"
    assert choose(90_000, TrainConfig(workflow="features"), 200, 40).workflow == "features"


@pytest.mark.slow
def test_changed_image_invalidates_only_its_cache_entry(colours, tmp_path):
    from edgetransfer import backbones
    from edgetransfer.training.features import FeatureCache, FeatureKey, extract

    ds = data_lib.load(colours)
    base = backbones.build("mobilenet_v2_035", weights="none", input_size=32)
    import keras

    pooled = keras.Model(base.input, keras.layers.GlobalAveragePooling2D()(base.output))
    cache = FeatureCache(tmp_path / "cache", FeatureKey("mobilenet_v2_035", "none", 32, "top", "crop"))
    first, _, s1 = extract(pooled, ds.files, cache)
    again, _, s2 = extract(pooled, ds.files, cache)
    assert (s1.misses, s2.misses, s2.hits) == (36, 0, 36)
    np.testing.assert_array_equal(first, again)
    write_image(ds.files[5].path, size=(36, 36), color=(0, 0, 0), seed=99)  # edit one image
    changed = data_lib.load(colours)
    _, _, s3 = extract(pooled, changed.files, cache)
    assert (s3.misses, s3.hits) == (1, 35)


# --- bad input: exit 2 and a clear message --------------------------------------------------


def test_label_mismatch_between_train_and_val(invoke, tmp_path):
    make_folder(tmp_path / "tr", {"a": 3, "b": 3})
    make_folder(tmp_path / "va", {"a": 2, "c": 2})
    code, _, err = invoke("train", "--data", tmp_path / "tr", "--val-data", tmp_path / "va", "--out", tmp_path / "o")
    assert code == 2 and "classes differ" in err and str(tmp_path / "va") in err


def test_image_size_below_backbone_minimum(invoke, colours, tmp_path):
    code, _, err = invoke(
        "train", "--data", colours, "--backbone", "mobilenet_v2_035", "--image-size", "16", "--out", tmp_path / "o"
    )
    assert code == 2 and "--image-size 16" in err and "32" in err


@pytest.mark.slow
def test_existing_run_dir_and_missing_resume(invoke, colours, tmp_path):
    (tmp_path / "done").mkdir()
    code, _, err = invoke("train", "--data", colours, "--out", tmp_path / "done")
    assert code == 2 and "already exists" in err
    code, _, err = invoke("train", "--data", colours, "--out", tmp_path / "fresh", "--resume")
    assert code == 2 and "nothing to resume" in err


def test_bad_options(invoke, colours, tmp_path):
    code, _, err = invoke(
        "train", "--data", colours, "--workflow", "features", "--unfreeze", "all", "--out", tmp_path / "o"
    )
    assert code == 2 and "--unfreeze" in err
    code, _, err = invoke("train", "--data", colours, "--backbone", "mobilenetv2", "--out", tmp_path / "o")
    assert code == 2 and "did you mean" in err


# --- distributed (kill -9 and --resume in both phases: tests/unit/training/test_faults.py) --------------


DISTRIBUTED = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edgetransfer.training import TrainConfig, fit, train
from edgetransfer.training.model import strategy_for
strategy, desc = strategy_for("mirrored")
cfg = TrainConfig(backbone="efficientnet_lite0", image_size=32, batch_size=8, learning_rate=1e-2,
                  workflow="fine-tune", unfreeze="10", epochs=6, fine_tune_epochs=2, strategy="mirrored", val_split=0.34)
seen = []
orig = fit.run
def spy(*a, **k):
    r = orig(*a, **k)
    var = r.model.get_layer("classes").kernel.value
    seen.append(sorted(v.device for v in var.values))
    return r
fit.run = spy
run = train(sys.argv[1], cfg, out=sys.argv[2])
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "devices": seen[0], "strategy": run.manifest.strategy,
                  "acc": run.val_accuracy}))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(colours, tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED, str(colours), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["strategy"] == "mirrored over 2 devices"
    assert len(out["devices"]) == 2 and out["devices"][0] != out["devices"][1]  # a copy on each replica
    assert out["acc"] > 0.5


@pytest.mark.slow
def test_cut_at_shallower_prefix_and_augmented_views(colours, tmp_path):
    run = train(
        colours,
        TrainConfig(**TINY, workflow="features", cut_at="stride16", feature_views=2, epochs=8, val_split=0.34),
        out=tmp_path / "cut",
    )
    m = run.manifest.to_json()
    assert m["cut_at"] == "stride16" and m["config"]["feature_views"] == 2
    # 24 train images x 2 views + 12 val images x 1 view
    assert sum(m["feature_cache"].values()) == 24 * 2 + 12
    base = run.load_model().get_layer("efficientnet_lite0_stride16")
    assert base.output.shape[1] == 2  # 32 px / 16
