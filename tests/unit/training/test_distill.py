"""Knowledge distillation (training/distill.py): the loss, the cache of soft labels, the manifest,
alpha = 0 against a plain student, and a teacher of other classes refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_folder

from edgetransfer.errors import ConfigError
from edgetransfer.records import DataInfo, Metrics, RunManifest
from edgetransfer.training import TrainConfig, distill, train

TINY = dict(
    backbone="efficientnet_lite0",
    image_size=32,
    workflow="features",
    epochs=15,
    patience=15,
    learning_rate=1e-2,
    batch_size=8,
    val_split=0.3,
)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_loss_matches_hand_computation():
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 2, (5, 3)), rng.normal(0, 3, (5, 3))
    y = np.array([0, 2, 1, 1, 0])
    temp, alpha = 4.0, 0.7
    p = np.exp(_log_softmax(t / temp))
    kl = (p * (_log_softmax(t / temp) - _log_softmax(s / temp))).sum(-1)
    ce = -_log_softmax(s)[np.arange(5), y]
    want = alpha * temp**2 * kl + (1 - alpha) * ce
    loss = distill.distill_loss(3, temp, alpha)
    got = np.asarray(loss(distill.targets(y, 3, t).astype(np.float32), s.astype(np.float32)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # validation rows (no teacher): plain cross-entropy, comparable with a plain student's val_loss
    plain = np.asarray(loss(distill.targets(y, 3, None), s.astype(np.float32)))
    np.testing.assert_allclose(plain, ce, rtol=1e-5)


def test_config_checks():
    with pytest.raises(ConfigError, match="distill-alpha"):
        TrainConfig(distill_alpha=1.5)
    with pytest.raises(ConfigError, match="distill-temperature"):
        TrainConfig(distill_temperature=0)
    with pytest.raises(ConfigError, match="--augment-views with --teacher"):
        TrainConfig(teacher="runs/t", feature_views=3)


def _fake_run(root, classes):
    """A finished run's manifest (no model needed: the classes are checked first)."""
    root.mkdir(parents=True)
    m = RunManifest(
        backbone="efficientnet_lite2",
        weights="imagenet",
        input_size=32,
        preprocess={},
        classes=tuple(classes),
        data=DataInfo("x", "f"),
        config={},
        metrics=Metrics(0.9),
    )
    (root / "manifest.json").write_text(__import__("json").dumps(m.to_json()))
    return root


def test_teacher_with_other_classes_is_exit_2_naming_both(tmp_path, invoke):
    data = make_folder(tmp_path / "data", {"red": 4, "green": 4, "blue": 4}, size=(36, 36))
    teacher = _fake_run(tmp_path / "teacher", ["ants", "bees"])
    code, _, err = invoke("train", "--data", data, "--teacher", teacher, "--out", tmp_path / "out")
    assert code == 2
    assert "['ants', 'bees']" in err and "['blue', 'green', 'red']" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_teacher_not_a_run_is_exit_2(tmp_path, invoke):
    data = make_folder(tmp_path / "data", {"red": 4, "green": 4}, size=(36, 36))
    code, _, err = invoke("train", "--data", data, "--teacher", tmp_path / "nope", "--out", tmp_path / "out")
    assert code == 2 and "manifest.json" in err


@pytest.mark.slow
def test_distilled_features_student(tiny_run, tmp_path, monkeypatch):
    """The manifest records the teacher; the soft labels are cached and reused; alpha = 0 on
    the clean view only is the plain student; the saved graph is the plain student's."""
    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "data", {"red": 10, "green": 10, "blue": 10}, size=(36, 36))
    # as the tiny teacher: make_folder colours classes by insertion order, so the same order
    cfg = TrainConfig(**TINY, teacher=str(tiny_run.run_dir), distill_views=3)
    first = train(data, cfg, out=tmp_path / "s1").manifest
    d = first.config["distill"]
    assert d["teacher"]["run"] == str(tiny_run.run_dir.resolve())
    assert d["teacher"]["backbone"] == "efficientnet_lite0"
    assert d["teacher"]["val_accuracy"] == tiny_run.manifest.metrics.val_accuracy
    assert (d["temperature"], d["alpha"], d["views"], d["soft_labels"]) == (4.0, 0.9, 3, "computed")
    assert first.metrics.val_accuracy >= 0.5

    def boom(model):
        raise AssertionError("the teacher ran again: soft labels were not reused")

    original = distill._teacher_logits_fn
    monkeypatch.setattr(distill, "_teacher_logits_fn", boom)
    second = train(data, cfg, out=tmp_path / "s2").manifest
    monkeypatch.setattr(distill, "_teacher_logits_fn", original)
    assert second.config["distill"]["soft_labels"] == "cached"
    assert second.metrics.val_accuracy == first.metrics.val_accuracy

    plain = train(data, TrainConfig(**TINY), out=tmp_path / "plain")
    zero = train(
        data, TrainConfig(**TINY, teacher=str(tiny_run.run_dir), distill_alpha=0, distill_views=1), out=tmp_path / "a0"
    )
    assert zero.manifest.metrics.val_accuracy == plain.manifest.metrics.val_accuracy
    a, b = plain.load_model(), zero.load_model()
    assert a.get_config() == b.get_config()  # same graph: distillation changes only weights
    wa, wb = a.get_layer("classes").get_weights(), b.get_layer("classes").get_weights()
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, atol=1e-4)


@pytest.mark.slow
def test_distilled_fine_tune_student(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "data", {"red": 8, "green": 8, "blue": 8}, size=(36, 36))
    fast = {**TINY, "workflow": "fine-tune", "epochs": 2, "fine_tune_epochs": 1, "unfreeze": "10"}
    run = train(data, TrainConfig(**fast, teacher=str(tiny_run.run_dir), distill_views=2), out=tmp_path / "ft")
    assert run.manifest.workflow == "fine-tune"
    assert run.manifest.config["distill"]["views"] == 2
    assert len(run.manifest.phase_starts) == 2
    plain = train(data, TrainConfig(**fast), out=tmp_path / "plain")
    assert run.load_model().get_config() == plain.load_model().get_config()


def test_auto_reconsiders_after_the_features_head():
    from edgetransfer.training.config import Plan, reconsider

    first = Plan("features", "0", "245 training images <= 1,000: the head alone generalises best")
    kept = reconsider(first, 0.99, 0.95, 40)
    assert kept.workflow == "features" and "kept after the features head" in kept.reason
    inseparable = reconsider(first, 0.80, 0.95, 40)
    assert (inseparable.workflow, inseparable.unfreeze) == ("fine-tune", "40")
    assert "do not separate the classes" in inseparable.reason
    poor = reconsider(first, 0.99, 0.60, 40)
    assert poor.workflow == "fine-tune" and "val 0.600 < 0.9" in poor.reason


@pytest.mark.slow
def test_auto_goes_on_to_fine_tune(tmp_path, monkeypatch):
    """When the head cannot fit its training set (forced here), auto fine-tunes and says why."""
    from edgetransfer.training import config

    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(config, "SEPARABLE_TRAIN_MIN", 1.01)
    data = make_folder(tmp_path / "data", {"red": 8, "green": 8, "blue": 8}, size=(36, 36))
    cfg = TrainConfig(**{**TINY, "workflow": "auto", "epochs": 2, "fine_tune_epochs": 1})
    m = train(data, cfg, out=tmp_path / "auto").manifest
    assert "do not separate the classes" in m.reason
    seen = m.config["runtime"]
    assert set(seen["features_head"]) == {"train_accuracy", "val_accuracy"} and "val_accuracy" in seen["fine_tune"]
    # the better of the two on validation is kept (ties go to the fine-tuned model)
    if seen["fine_tune"]["val_accuracy"] >= seen["features_head"]["val_accuracy"]:
        assert m.workflow == "fine-tune" and len(m.phase_starts) == 2
    else:
        assert m.workflow == "features" and "head kept" in m.reason
