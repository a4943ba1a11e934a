"""Fast layer for training's mechanics on the tiny untrained model: a resumable phase logs every
epoch, marks itself finished and is not run again; the run folder the writers produce opens."""

from __future__ import annotations

import numpy as np
from conftest import tiny_keras_model

from edgetransfer.training import TrainedModel
from edgetransfer.training.fit import fit_phase, smoothed_stopping
from edgetransfer.training.model import compile_model


def _data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32"), rng.integers(0, 3, n)


def test_a_phase_logs_each_epoch_and_is_not_run_twice(tmp_path):
    model = tiny_keras_model()
    compile_model(model, 1e-3)
    model.jit_compile = False  # XLA's compile of a 3-step fit costs more than the fit here
    x, y = _data()
    fit = {"x": x, "y": y, "validation_data": _data(6, 1), "batch_size": 4, "shuffle": False}
    history = fit_phase(model, "head", tmp_path, 2, 5, fit, smoothed_stopping(5, 0.5))
    assert len(history["loss"]) == 2 and "val_accuracy_smoothed" in history
    assert (tmp_path / "head.weights.h5").exists() and (tmp_path / "head.csv").exists()
    weights = [w.copy() for w in model.get_weights()]
    again = fit_phase(model, "head", tmp_path, 2, 5, fit)  # finished before: loaded, not trained
    assert again == history
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_the_untrained_run_is_a_finished_run_folder(untrained_run):
    run = TrainedModel.from_dir(untrained_run.run_dir)
    assert run.classes == ["blue", "green", "red"] and run.input_size == 32
    assert {"model.keras", "manifest.json", "curves.png", "confusion.png"} <= {
        p.name for p in untrained_run.run_dir.iterdir()
    }
    assert not untrained_run.run_dir.with_name(untrained_run.run_dir.name + ".partial").exists()
    model = run.load_model()  # safe_mode load, as export does
    assert model.get_layer("tiny_backbone").get_layer("preprocess").scale == 1 / 128
