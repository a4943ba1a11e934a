"""Issue #26, the first hour again: file modes under the umask, torn checkpoints, a class with
one image, progress on a terminal, noise, output that matches the README. Tiny fixtures only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import make_folder

# -- (2) file modes follow the umask ----------------------------------------------------------------------------


@pytest.fixture
def umask():
    def set_(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "file_mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask, mask, file_mode):
    from edgetransfer import io

    umask(mask)
    assert io.default_mode() == file_mode
    assert _mode(io.atomic_write(tmp_path / "a.tflite", b"x")) == file_mode
    assert _mode(io.write_json(tmp_path / "manifest.json", {"a": 1})) == file_mode
    with io.atomic_path(tmp_path / "model.keras") as tmp:
        tmp.write_bytes(b"k")
    assert _mode(tmp_path / "model.keras") == file_mode


def test_sample_digits_folder_is_not_private(tmp_path, umask):
    from edgetransfer.data import samples

    umask(0o022)
    out = samples.write_digits(tmp_path / "quickstart-out" / "digits", size=8, per_class=1)
    assert _mode(out) == 0o755
    assert all(_mode(p) == 0o644 for p in out.rglob("*.png"))


# -- (3) a torn checkpoint never crashes --resume ---------------------------------------------------------------


def _tiny_model():
    from edgetransfer import _lazy

    keras = _lazy.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)


def _fit_and_keep(model, work: Path, epochs: int) -> None:
    """Train ``epochs`` epochs with the checkpoints of :mod:`checkpoint`, as if interrupted at the end."""
    from edgetransfer.training import checkpoint

    backup = checkpoint.callback(work / "backup_head", work / "head.csv")
    backup.on_train_end = lambda logs=None: None  # an interruption: the backups stay
    x, y = _data()
    from edgetransfer import _lazy

    csv = _lazy.keras().callbacks.CSVLogger(str(work / "head.csv"), append=True)
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[backup, csv])


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    work = tmp_path_factory.mktemp("ckpt")
    _fit_and_keep(_tiny_model(), work, 3)
    return work


def test_checkpoints_are_renamed_into_place_and_two_are_kept(checkpointed):
    names = sorted(p.name for p in (checkpointed / "backup_head").iterdir())
    assert names == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]
    assert len((checkpointed / "head.csv").read_text().splitlines()) == 4


def _cuts(size: int) -> list[int]:
    """Every kind of byte boundary a write can stop at: empty, inside the HDF5 superblock, inside the
    object headers, a few points through the data, one byte short."""
    return sorted({0, 1, 7, 8, 47, 96, 512, 2048, size // 4, size // 2, (3 * size) // 4, size - 64, size - 1})


def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(checkpointed, tmp_path, caplog):
    import shutil

    from edgetransfer.training import checkpoint

    newest = checkpointed / "backup_head" / "epoch-0003.weights.h5"
    data = newest.read_bytes()
    for cut in _cuts(len(data)):
        backup = tmp_path / f"cut{cut}"
        shutil.copytree(checkpointed / "backup_head", backup)
        (backup / newest.name).write_bytes(data[:cut])
        model = _tiny_model()
        before = [w.copy() for w in model.get_weights()]
        assert checkpoint.restore(model, backup) == 2, cut
        assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert "torn or unreadable" in caplog.text


def test_every_checkpoint_torn_restarts_the_phase_from_clean_weights(checkpointed, tmp_path):
    from edgetransfer.training import checkpoint

    backup = tmp_path / "backup_head"
    backup.mkdir()
    for p in (checkpointed / "backup_head").iterdir():
        (backup / p.name).write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    assert checkpoint.restore(model, backup) is None
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing half-loaded


def test_keras_layout_torn_mid_write_resumes_instead_of_crashing(checkpointed, tmp_path):
    """The layout Keras' BackupAndRestore left (``latest.weights.h5`` torn at 362 KB of 14 MB in the
    report): the phase restarts, the CSV log is dropped, fit runs every epoch, nothing raises."""
    from edgetransfer.training import checkpoint

    work = tmp_path / "run.partial"
    backup = work / "backup_head"
    backup.mkdir(parents=True)
    good = (checkpointed / "backup_head" / "epoch-0003.weights.h5").read_bytes()
    (backup / "latest.weights.h5").write_bytes(good[: len(good) // 3])
    (backup / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    (work / "head.csv").write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    model = _tiny_model()
    _fit_and_keep(model, work, 2)
    assert len((work / "head.csv").read_text().splitlines()) == 3  # header + the 2 epochs rerun
    assert checkpoint.restore(_tiny_model(), backup) == 2


def test_resume_from_a_fallback_trims_the_log_to_the_checkpoint(checkpointed, tmp_path):
    import shutil

    work = tmp_path / "run.partial"
    shutil.copytree(checkpointed, work)
    newest = work / "backup_head" / "epoch-0003.weights.h5"
    newest.write_bytes(newest.read_bytes()[:100])
    model = _tiny_model()
    _fit_and_keep(model, work, 4)  # restored at epoch 2: epochs 3 and 4 run again
    rows = (work / "head.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]


def test_disk_full_mid_checkpoint_leaves_the_previous_one_and_no_temporary(checkpointed, tmp_path, monkeypatch):
    import errno
    import shutil

    from edgetransfer.training import checkpoint

    backup = tmp_path / "backup_head"
    shutil.copytree(checkpointed / "backup_head", backup)
    model = _tiny_model()

    def full(path):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n")  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save_weights", full)
    with pytest.raises(OSError):
        checkpoint.save(model, backup, 4)
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]
    assert checkpoint.restore(_tiny_model(), backup) == 3


# -- (4) a class too small to be trained and validated -----------------------------------------------------------


def test_one_image_class_is_exit_2_with_counts_and_fix(tmp_path, invoke):
    root = make_folder(tmp_path / "d", {"ants": 8, "bees": 1}, size=(32, 32))
    code, out, err = invoke(
        "train", "--data", root, "--backbone", "efficientnet_lite0", "--image-size", "32", "--out", tmp_path / "r"
    )
    assert code == 2, err
    assert "bees: train 1 / val 0" in err and "fix: add images to 'bees'" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_data_inspect_warns_about_a_one_image_class(tmp_path, invoke, caplog):
    root = make_folder(tmp_path / "d", {"ants": 8, "bees": 1}, size=(32, 32))
    code, out, err = invoke("data", "inspect", root)
    assert code == 0
    assert "class 'bees' has 1 image: it cannot be both trained and validated" in caplog.text
    assert "UserWarning" not in err


# -- (1) progress on a terminal; backbones list/show without building models -------------------------------------


def test_backbones_list_and_show_import_no_tensorflow(tmp_path):
    """A listing answers from the shipped profile table: no TensorFlow import, no model built
    (issue #26: 102 s warm, 137 s cold)."""
    import subprocess
    import sys

    from conftest import REPO

    code = (
        "import sys; from click.testing import CliRunner; from edgetransfer.cli import cli; r = CliRunner();"
        "a = r.invoke(cli, ['backbones', 'list']); b = r.invoke(cli, ['backbones', 'show', 'mobilenet_v2']);"
        "assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output);"
        "assert 'mobilenet_v2_035' in a.output and 'stride16' in b.output;"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGETRANSFER_CACHE": str(tmp_path / "empty-cache")}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2_035", "efficientnet_lite0"])
def test_shipped_profiles_match_the_built_graph(name, tmp_path, monkeypatch):
    from edgetransfer import backbones as bb
    from edgetransfer.backbones import _profiles, api

    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path))
    monkeypatch.setattr(_profiles, "PROFILES", {})
    counted = api.profile(name)
    monkeypatch.undo()
    assert bb.profile(name) == counted


def test_progress_is_silent_off_a_terminal_and_under_json(capsys, monkeypatch):
    import io

    from edgetransfer import progress

    with progress.stage("exporting"), progress.bar(3, "files") as b:
        b.update(3)
    progress.line("data 1 / 2")
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    with progress.stage("exporting 2 files"):
        for _ in progress.iterate([1, 2], "files"):
            pass
    progress.line("data 1 / 2")
    shown = tty.getvalue()
    assert "» exporting 2 files" in shown and "2/2 files" in shown and "data 1 / 2\n" in shown
    token = progress.disable()
    try:
        before = tty.getvalue()
        with progress.stage("quiet"), progress.bar(2, "x") as b:
            b.update(2)
        progress.line("nothing")
        assert tty.getvalue() == before
    finally:
        progress.restore(token)


def test_epoch_lines_reach_the_log_when_not_a_terminal(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="edgetransfer")
    _fit_and_keep_with_progress(_tiny_model(), tmp_path, 2)
    assert "head epoch 1/2  loss" in caplog.text and "head epoch 2/2" in caplog.text


def _fit_and_keep_with_progress(model, work: Path, epochs: int) -> None:
    from edgetransfer.training import checkpoint

    x, y = _data()
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[checkpoint.progress_callback("head", epochs)])


# -- (6) output that matches the README: a drop column, RAM/flash on MCUs, no best that does not fit -------------


def _fit(arena_bytes: int, flash_bytes: int, ram_ok: bool, flash_ok: bool = True):
    from edgetransfer.records import MemoryFit

    return MemoryFit("stm32h7", arena_bytes, flash_bytes, "sram", 1, 1, ram_ok, flash_ok, ram_ok and flash_ok)


def _fake_report(memory):
    from types import SimpleNamespace as NS

    from edgetransfer.records import Measurement

    lat = NS(p50=3.0, p90=4.0, provenance="estimated", detail={"runtime": "tflm"}, host={})
    rec = NS(
        artifact="/x/model_int8.tflite", target="stm32h7", precision="int8", accuracy=0.90, accuracy_drop=1.5,
        agreement=0.97, latency=lat, size_bytes=4_000_000, compatibility=None, memory=memory,
        fits=Measurement.fits.fget(NS(memory=memory)),  # the record's own rule, on the fake's memory
    )  # fmt: skip
    best = NS(artifact=rec.artifact, p50_ms=3.0, provenance="estimated", runtime="tflm", accuracy=0.9)
    return NS(records=[rec], best={"stm32h7": best})


def test_table_has_a_drop_column_and_ram_flash_for_mcu_targets():
    from edgetransfer import report

    header, rows = report.table(_fake_report(None))
    assert header[3:5] == ["accuracy", "drop"] and rows[0][4] == "1.50"
    assert "RAM KiB" not in header
    mem = _fit(600 * 1024, 3900 * 1024, ram_ok=False)
    header, rows = report.table(_fake_report(mem))
    assert header[-3:] == ["RAM KiB", "flash KiB", "delegated"]
    assert rows[0][-3:-1] == ["600 (over)", "3,900"]


def test_a_file_that_does_not_fit_is_never_best():
    from edgetransfer import report

    mem = _fit(1, 1, ram_ok=False)
    assert report.best(_fake_report(mem)) == {"stm32h7": None}
    fits = _fit(1, 1, ram_ok=True)
    assert report.best(_fake_report(fits))["stm32h7"] is not None


# -- (5) noise the README says is hidden ----------------------------------------------------------------------


def test_onnxruntime_calibration_prints_are_debug_records(capsys, caplog):
    import logging
    import sys

    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import calibrate

    from edgetransfer.exporter.quantization.calibration import quiet_ort_calibration

    caplog.set_level(logging.DEBUG, logger="edgetransfer")
    quiet_ort_calibration()
    quiet_ort_calibration()  # idempotent
    calibrate.print("Collecting tensor data and making histogram ...")
    calibrate.print("Finding optimal threshold for each tensor using 'entropy' algorithm ...")
    calibrate.print("Number of histogram bins : 128 (The number may increase depends on the data it collects)")
    calibrate.print("to a stream asked for", file=sys.stdout)  # an explicit file= is not chatter
    out = capsys.readouterr().out
    assert out == "to a stream asked for\n"
    assert "Collecting tensor data" in caplog.text and "Number of histogram bins" in caplog.text


def test_classifier_prints_no_litert_info_line(tmp_path):
    """``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` is written by native code to fd 2:
    checked in a child process, on the real descriptor."""
    import subprocess
    import sys

    import tensorflow as tf  # converted here: the child imports only LiteRT (no TensorFlow start-up to wait for)
    from conftest import REPO

    m = tf.keras.Sequential(
        [tf.keras.Input((8, 8, 3)), tf.keras.layers.Conv2D(2, 3), tf.keras.layers.GlobalAveragePooling2D()]
    )
    (tmp_path / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    code = f"""
import os
import numpy as np
os.write(2, b"--- converted ---\\n")
from edgetransfer.runtime.litert import LiteRT
s = LiteRT().load({str(tmp_path / "m.tflite")!r})
print(s.run(np.zeros((1, 8, 8, 3), np.float32)).shape)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGETRANSFER_NATIVE_LOGS", None)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    after = res.stderr.split("--- converted ---", 1)[1]
    assert "INFO:" not in after and "XNNPACK" not in after, after


def test_mobilenet_v2_builds_without_a_keras_input_shape_warning(recwarn, monkeypatch):
    """Keras warns on every MobileNetV2(input_tensor=..., weights="imagenet") (its input_shape is
    None then); the weights download is stubbed here, the warning is Keras' own text."""
    import warnings

    from edgetransfer import _lazy
    from edgetransfer import backbones as bb

    apps = _lazy.keras().applications
    real = apps.MobileNetV2

    def offline(*args, **kwargs):
        warnings.warn(
            "`input_shape` is undefined or non-square, or `rows` is not in [96, 128, 160, 192, 224]. "
            "Weights for input shape (224, 224) will be loaded as the default.",
            stacklevel=2,
        )
        return real(*args, **{**kwargs, "weights": None})

    monkeypatch.setattr(apps, "MobileNetV2", offline)
    bb.build("mobilenet_v2_035", weights="imagenet", input_size=96)
    assert not [w for w in recwarn if "input_shape" in str(w.message)]


def test_targets_show_prints_no_python_tuples_or_none(invoke):
    code, out, _ = invoke("targets", "show", "stm32h7")
    assert code == 0
    assert "None" not in out and "('" not in out and "{'" not in out
    assert "budgets      ram_kb 1024, flash_kb 2048" in out and "formats      tflite" in out


def test_gitignore_covers_sweep_and_junit_outputs():
    from conftest import REPO

    lines = (REPO / ".gitignore").read_text().splitlines()
    assert "sweep-out/" in lines and "budgets*.xml" in lines


def test_did_you_mean_suggests_backbones_that_train_offline_first():
    from edgetransfer import backbones as bb
    from edgetransfer.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        bb.get("efficientnet_lite")
    fix = exc.value.fix or ""
    assert fix.startswith("did you mean 'efficientnet_lite0', 'efficientnet_lite1' or 'efficientnet_lite2'")
    assert "efficientnet_lite3, efficientnet_lite4 have no ImageNet weights here" in fix


def test_val_split_ignored_for_a_folder_with_val_is_said(tmp_path, invoke, caplog):
    root = tmp_path / "d"
    make_folder(root / "train", {"a": 1, "b": 1}, size=(32, 32))
    make_folder(root / "val", {"a": 1, "b": 1}, size=(32, 32))
    (tmp_path / "r").mkdir()  # "run directory already exists": stops before any training
    code, _, err = invoke("train", "--data", root, "--val-split", "0.3", "--image-size", "32", "--out", tmp_path / "r")
    assert code == 2
    assert "--val-split 0.3 is ignored: the held-out images come from its own val/ folder" in caplog.text + err


def test_validate_on_a_readme_says_not_a_model(invoke):
    from conftest import REPO

    code, _, err = invoke("validate", REPO / "README.md")
    assert code == 2 and "not a model file" in err and ".tflite" in err


def test_a_split_folder_linked_outside_the_data_root_is_named_and_can_be_allowed(tmp_path, invoke):
    from edgetransfer import data as data_lib

    elsewhere = make_folder(tmp_path / "elsewhere" / "train", {"a": 3, "b": 3}, size=(32, 32))
    root = tmp_path / "data"
    make_folder(root / "val", {"a": 1, "b": 1}, size=(32, 32))
    (root / "train").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = invoke("data", "inspect", root)
    assert code == 2, err
    assert f"train/ is a symbolic link to {elsewhere.resolve()}, outside the data folder" in err
    assert "--follow-links" in err and "failed to decode" not in err
    ds = data_lib.load(root, follow_links=True)
    assert len(ds.split("train")) == 6 and len(ds.split("val")) == 2
    code, out, err = invoke("data", "inspect", root, "--follow-links")
    assert code == 0, err


def test_report_colours_follow_precision_and_host_is_not_raw_json():
    from types import SimpleNamespace as NS

    from edgetransfer.report import _plain_value, _styles

    recs = [NS(artifact=f"/x/{n}", precision=p) for n, p in [("a_int8.onnx", "int8"), ("b_fp32.tflite", "fp32"),
                                                               ("c_int8.tflite", "int8")]]  # fmt: skip
    style = _styles(recs)
    assert style["a_int8.onnx"][0] == style["c_int8.tflite"][0] != style["b_fp32.tflite"][0]
    assert style["a_int8.onnx"][1] != style["c_int8.tflite"][1]  # same colour, told apart by marker
    assert _plain_value({"litert": "1.2", "ort": None}) == "litert: 1.2, ort: -"


@pytest.mark.slow
def test_resume_after_a_checkpoint_torn_at_every_boundary_kind_is_never_a_traceback(tmp_path, invoke, monkeypatch):
    """End to end through the CLI: a run interrupted in its head phase with its newest epoch
    checkpoint torn (empty, inside the HDF5 header, half-way) resumes with exit 0."""
    import shutil

    from edgetransfer.training import checkpoint, rundir

    root = make_folder(tmp_path / "d", {"red": 6, "green": 6}, size=(32, 32))
    args = ["train", "--data", root, "--backbone", "efficientnet_lite0", "--image-size", "32", "--batch-size", "4",
            "--val-split", "0.34", "--workflow", "fine-tune", "--unfreeze", "4", "--epochs", "3",
            "--fine-tune-epochs", "0", "--no-augment", "--out"]  # fmt: skip

    def interrupted(partial, out):
        raise KeyboardInterrupt

    real_callback = checkpoint.callback

    def keep_backups(backup, log):
        cb = real_callback(backup, log)
        cb.on_train_end = lambda logs=None: None
        return cb

    with monkeypatch.context() as m:
        m.setattr(rundir, "finalize", interrupted)
        m.setattr(checkpoint, "callback", keep_backups)
        code, _, err = invoke(*args, tmp_path / "run")
    assert code == 130, err
    partial = tmp_path / "run.partial"
    (partial / "head.weights.h5").unlink()  # as if interrupted inside the head phase
    newest = partial / "backup_head" / "epoch-0003.weights.h5"
    data = newest.read_bytes()
    for i, cut in enumerate((0, 48, len(data) // 2)):
        work = tmp_path / f"cut{i}.partial"
        shutil.copytree(partial, work)
        (work / "backup_head" / newest.name).write_bytes(data[:cut])
        code, out, err = invoke(*args, tmp_path / f"cut{i}", "--resume")
        assert code == 0, err
        assert "Traceback" not in err
        assert (tmp_path / f"cut{i}" / "model.keras").is_file()


def test_a_resumed_sweep_report_does_not_read_as_zero_cost():
    from edgetransfer.records import SweepStats
    from edgetransfer.report.sweep import timing

    line = timing(SweepStats(configs=8, computed=0, reused=8, seconds=0.4, compute_seconds=125.0))
    assert line == "0.4 s (computing the 8 configurations took 125 s in all)"
    assert timing(SweepStats(configs=8, computed=8, reused=0, seconds=60, compute_seconds=60)) == "60.0 s"


def test_stage_shows_info_records_as_lines_and_keeps_quiet_quiet(monkeypatch, caplog):
    import io
    import logging

    from edgetransfer import progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    log = logging.getLogger("edgetransfer")
    monkeypatch.setattr(log, "level", logging.ERROR)  # as under -q's root level, effective ERROR
    with progress.stage("searching", info=True):
        log.info("doctor tflite #1 calibration 400 images: drop 0.4")
        log.warning("a warning -q hides")
    assert "  doctor tflite #1 calibration 400 images: drop 0.4\n" in tty.getvalue()
    assert "a warning -q hides" not in caplog.text
    assert log.level == logging.ERROR and not log.filters


def _on_a_terminal(args: list[str]) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it wrote."""
    import pty
    import subprocess
    import sys

    from conftest import REPO

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "edgetransfer", *args], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_the_bar_and_json_gets_one_document(tmp_path):
    import json

    root = make_folder(tmp_path / "d", {"a": 12, "b": 12}, size=(32, 32))
    shown = _on_a_terminal(["data", "inspect", str(root)])
    assert "24/24 images checked" in shown
    doc = _on_a_terminal(["data", "inspect", str(root), "--json"])
    assert "images checked" not in doc and "\x1b[" not in doc
    assert json.loads(doc)["classes"] == ["a", "b"]
