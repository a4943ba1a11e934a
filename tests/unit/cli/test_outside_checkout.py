"""It works outside this checkout (#11): portable artifacts, repeatable runs, JSON errors, the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv

import pytest
from conftest import REPO, make_folder, parse_json

from edgetransfer.training import TrainConfig, train

TINY = {"backbone": "efficientnet_lite0", "image_size": 32, "batch_size": 8, "val_split": 0.34, "learning_rate": 1e-2}


@pytest.mark.slow
def test_relative_out_then_validate_and_check_from_elsewhere(invoke, tmp_path, monkeypatch):
    data = make_folder(tmp_path / "colours", {"red": 9, "green": 9, "blue": 9}, size=(36, 36))
    work, other = tmp_path / "job1", tmp_path / "job2"
    work.mkdir()
    other.mkdir()
    monkeypatch.chdir(work)
    code, _, err = invoke(
        "train",
        "--data",
        data,
        "--workflow",
        "features",
        "--image-size",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--val-split",
        "0.34",
        "--out",
        "runs/c",
    )
    assert code == 0, err
    code, _, err = invoke("export", "runs/c", "--format", "tflite", "--precision", "fp32")
    assert code == 0, err
    moved = other / "artifacts"
    shutil.move(str(work / "runs"), moved)  # a CI job hands the whole run folder to the next one
    monkeypatch.chdir(other)
    art = moved / "c" / "export" / "model_fp32.tflite"
    code, out, err = invoke("validate", art.resolve(), "--budget-s", "0.1", "--json")  # no --data: the run's split
    assert code == 0, err
    doc = json.loads(out)
    assert doc["held_out"]["images"] == 9 and "seeded" in doc["held_out"]["split"]
    code, _, err = invoke("check", art.resolve(), "--max-size-mb", "50", "--max-accuracy-drop", "50")
    assert code == 0, err


def test_a_file_that_does_not_match_its_manifest_is_refused(invoke, untrained_exports, tmp_path):
    src = untrained_exports[("tflite", "fp32")].path
    shutil.copy(src, tmp_path / src.name)
    shutil.copy(src.with_name(src.name + ".manifest.json"), tmp_path / (src.name + ".manifest.json"))
    with open(tmp_path / src.name, "ab") as fh:
        fh.write(b"tampered")
    code, _, err = invoke("check", tmp_path / src.name, "--max-size-mb", "50")
    assert code == 2 and "does not match its manifest" in err and src.name in err


@pytest.mark.slow
def test_cold_and_warm_feature_cache_give_the_same_run(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "colours", {"red": 8, "green": 8, "blue": 8}, size=(36, 36))
    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(**TINY, workflow="features", epochs=4, seed=3)
    cold = train(data, cfg, out=tmp_path / "cold").manifest
    warm = train(data, cfg, out=tmp_path / "warm").manifest
    assert cold.feature_cache["misses"] > 0 and warm.feature_cache["misses"] == 0
    assert cold.metrics.val_accuracy == warm.metrics.val_accuracy
    assert cold.metrics.val_loss == pytest.approx(warm.metrics.val_loss, abs=1e-6)


def test_json_errors_are_one_document_on_stdout(invoke, tmp_path):
    code, out, err = invoke("validate", tmp_path / "missing.tflite", "--json")
    assert code == 2 and "missing.tflite" in err
    doc = parse_json(out)
    assert doc["exit_code"] == 2 and "missing.tflite" in doc["error"] and doc["fix"] and doc["type"] == "DataError"


def test_targets_list_lists_every_shipped_profile(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./targets here: only the profiles shipped in the package
    code, out, err = invoke("targets", "list", "--json")
    assert code == 0, err
    names = {r["name"] for r in json.loads(out)}
    shipped = {p.stem for p in (REPO / "targets").glob("*.yaml")}
    assert names == shipped and all(r["origin"] == "shipped" for r in json.loads(out))


@pytest.mark.slow
def test_wheel_installs_and_works_from_another_folder(untrained_exports, tmp_path):
    """A real, non-editable install: build the wheel, install it (with [full]) into a fresh venv,
    then list every shipped profile and validate on pixel4-cpu from an unrelated folder."""
    dist = tmp_path / "dist"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(dist.glob("edgetransfer-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    py = env_dir / "bin" / "python"
    res = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", f"{wheel}[full]"], capture_output=True, text=True, timeout=1500
    )
    assert res.returncode == 0, res.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exe = env_dir / "bin" / "edgetransfer"
    res = subprocess.run(
        [str(exe), "targets", "list", "--json"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert {r["name"] for r in json.loads(res.stdout)} == {p.stem for p in (REPO / "targets").glob("*.yaml")}
    art = untrained_exports[("tflite", "int8")].path
    res = subprocess.run(
        [str(exe), "validate", str(art), "--target", "pixel4-cpu", "--json"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["records"][0]["provenance"] == "estimated" and doc["targets"]["pixel4-cpu"].endswith("pixel4-cpu.yaml")
    assert "site-packages" in doc["targets"]["pixel4-cpu"]
