"""Issue 25, the second reliability probe: no run, dataset or user file written over, profile names
that stay one path component, clean refusals instead of tracebacks, a bug's own exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_folder

from edgetransfer import io as et_io
from edgetransfer import targets
from edgetransfer.errors import ConfigError

# -- the write rule (io.py) ---------------------------------------------------------------------


def test_require_own_output_replaces_only_our_record_of_the_same_kind(tmp_path):
    report = tmp_path / "r.json"
    assert et_io.require_own_output(report, "edgetransfer.validation", "report") == report  # absent: fine
    report.write_text(json.dumps({"kind": "edgetransfer.validation", "schema": 2}))
    et_io.require_own_output(report, "edgetransfer.validation", "report")  # a report over a report
    for doc in ({"kind": "edgetransfer.run", "schema": 1}, {"mine": 1}, "not json {"):
        report.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        with pytest.raises(ConfigError, match="refusing to write the report over") as err:
            et_io.require_own_output(report, "edgetransfer.validation", "report")
        assert str(report) in str(err.value)
    md = tmp_path / "r.md"
    md.write_text("# edgetransfer validation\n\nrows")
    et_io.require_own_output(md, "edgetransfer.validation", "report")
    md.write_text("# my notes\n")
    with pytest.raises(ConfigError):
        et_io.require_own_output(md, "edgetransfer.validation", "report")
    with pytest.raises(ConfigError, match="folder"):
        et_io.require_own_output(tmp_path, "edgetransfer.validation", "report")


def test_require_outside(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    et_io.require_outside(tmp_path / "runs" / "a", data, "run directory", "data folder")
    et_io.require_outside(tmp_path / "data2", data, "run directory", "data folder")  # a prefix is not inside
    for inside in (data, data / "run", data / "a" / "b"):
        with pytest.raises(ConfigError, match="inside the data folder"):
            et_io.require_outside(inside, data, "run directory", "data folder")
    (tmp_path / "link").symlink_to(data)
    with pytest.raises(ConfigError):
        et_io.require_outside(tmp_path / "link" / "run", data, "run directory", "data folder")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "a\nb", "a\x00b", "..", ".", "", " ", "-rf", "a\\b"])
def test_check_component_refuses_and_safe_component_cleans(name):
    with pytest.raises(ConfigError):
        et_io.check_component(name, "name")
    safe = et_io.safe_component(name)
    assert "/" not in safe and "\x00" not in safe and "\n" not in safe and safe not in (".", "..", "")
    assert not safe.startswith((".", "-")) and len(safe.encode()) <= 255
    assert (Path("/out/picks") / safe).parent == Path("/out/picks")


def test_safe_component_keeps_plain_names_and_distinct_names_distinct():
    assert et_io.safe_component("pixel4-cpu") == "pixel4-cpu" == et_io.check_component("pixel4-cpu")
    assert et_io.safe_component("a/b") != et_io.safe_component("a_b")
    assert len(et_io.safe_component("x" * 1000).encode()) <= 255


# -- commands at their entry ---------------------------------------------------------------------


def test_validate_report_over_a_run_manifest_is_refused(tmp_path, invoke):
    manifest = tmp_path / "run" / "manifest.json"
    manifest.parent.mkdir()
    before = json.dumps({"kind": "edgetransfer.run", "schema": 3, "classes": ["a", "b"]})
    manifest.write_text(before)
    code, _, err = invoke("validate", tmp_path / "missing.tflite", "--report", manifest)
    assert code == 2 and "refusing to write the report over an edgetransfer run record" in err
    assert manifest.read_text() == before
    user = tmp_path / "notes.md"
    user.write_text("my notes")
    code, _, err = invoke("validate", tmp_path / "missing.tflite", "--report", user)
    assert code == 2 and "did not write" in err and user.read_text() == "my notes"


def test_train_out_inside_data_is_refused_before_any_work(tmp_path):
    from edgetransfer.training import TrainConfig, train

    data = make_folder(tmp_path / "data", {"a": 2, "b": 2}, size=(32, 32))
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    with pytest.raises(ConfigError, match="inside the data folder"):
        train(data, TrainConfig(image_size=32, epochs=1), out=data / "runs" / "r1")
    with pytest.raises(ConfigError, match="inside the data folder"):
        train(data, TrainConfig(image_size=32, epochs=1), out=tmp_path / "v" / "r", val_data=tmp_path / "v")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_export_out_run_keeps_the_run(untrained_run, tmp_path, invoke):
    run = tmp_path / "run"
    shutil.copytree(untrained_run.run_dir, run)
    before = (run / "manifest.json").read_bytes()
    code, _, err = invoke("export", run, "--out", run, "--format", "onnx")
    assert code == 2 and "refusing to write the export index" in err and "run record" in err
    assert (run / "manifest.json").read_bytes() == before


def test_export_of_a_manifest_with_more_classes_than_outputs_is_refused(untrained_run, tmp_path, invoke):
    run = tmp_path / "run"
    shutil.copytree(untrained_run.run_dir, run)
    doc = json.loads((run / "manifest.json").read_text())
    doc["classes"] = [*doc["classes"], "extra"]
    (run / "manifest.json").write_text(json.dumps(doc))
    code, _, err = invoke("export", run, "--out", tmp_path / "exp", "--format", "onnx")
    assert code == 2 and "4 classes but its model has 3 outputs" in err, err
    assert not list((tmp_path / "exp").glob("*.onnx"))


# -- profiles ------------------------------------------------------------------------------------

PROFILE = "description: d\nruntime: litert\nformats: [tflite]\nprecisions: [fp32]\nmeasure: host\n"


@pytest.mark.parametrize(
    "name",
    ['"../../escape"', '"/tmp/abs"', '"a\\nb"', '"a\\0b"', '".."', '"sub/dir"', '""'],
)
def test_profile_name_must_be_one_plain_path_component(tmp_path, name):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: {name}\n{PROFILE}")
    with pytest.raises(ConfigError, match="name") as err:
        targets.load_file(path)
    assert str(path) in str(err.value) and "description" not in str(err.value)


def test_absurd_threads_refused_cleanly(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: fast\nthreads: 99999999999999999999\n{PROFILE}")
    with pytest.raises(ConfigError, match="threads") as err:
        targets.load_file(path)
    assert str(path) in str(err.value)
    path.write_text(f"name: fast\nthreads: 4\n{PROFILE}")
    assert targets.load_file(path).threads == 4


# -- training resume, exit codes -----------------------------------------------------------------


def test_resume_before_the_first_checkpoint_starts_over(tmp_path):
    from edgetransfer.training import rundir

    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")  # killed after the start, before any checkpoint
    assert rundir.prepare(out, resume=True) == partial  # the printed fix works
    with pytest.raises(ConfigError, match="nothing to resume"):
        rundir.prepare(tmp_path / "never", resume=True)


def test_an_unexpected_exception_exits_70_and_says_it_is_a_bug(invoke, monkeypatch, tmp_path):
    from edgetransfer.cli import validate as validate_cli

    def boom(*a, **k):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(validate_cli, "validate", boom)
    code, _, err = invoke("validate", tmp_path / "m.tflite")
    assert code == 70 and "bug in edgetransfer" in err and "TypeError: unsupported operand" in err
    assert "Traceback" not in err
    code, out, _ = invoke("validate", tmp_path / "m.tflite", "--json")
    assert code == 70 and json.loads(out)["exit_code"] == 70
    code, _, _ = invoke("validate", "--no-such-option")
    assert code == 2  # click's own usage errors are untouched


def test_run_on_a_fifo_is_refused_not_blocked(tmp_path, invoke):
    import os
    import threading

    fifo = tmp_path / "pipeline.yaml"
    os.mkfifo(fifo)
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=invoke("run", fifo)), daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w") as fh:
            fh.write("x: 1\n")
        worker.join(5)
        pytest.fail("`edgetransfer run FIFO` blocked")
    code, _, err = result["r"]
    assert code == 2 and "not a regular file" in err and str(fifo) in err


# -- options that cannot work ------------------------------------------------------------------------


def test_image_size_zero_is_refused():
    from edgetransfer.training import TrainConfig

    with pytest.raises(ConfigError, match="--image-size 0"):
        TrainConfig(image_size=0)
    with pytest.raises(ConfigError, match="--image-size -5"):
        TrainConfig(image_size=-5)
    assert TrainConfig(image_size=None).image_size is None


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_validate_budget_s_must_be_positive_and_finite(invoke, tmp_path, value):
    code, _, err = invoke("validate", tmp_path / "m.tflite", "--budget-s", value)
    assert code == 2 and "--budget-s" in err


@pytest.mark.parametrize("args", [["--threads", "0"], ["--threads", "-2"], ["--budget-s", "nan"], ["--min-runs", "0"]])
def test_bench_refuses_options_that_cannot_work_not_the_model(tmp_path, args, capsys):
    from edgetransfer.runtime.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", str(tmp_path / "m.tflite"), *args])
    assert exit_.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_append_text_never_raises(tmp_path):
    summary = tmp_path / "summary.md"
    assert et_io.append_text(summary, "a\n", "GITHUB_STEP_SUMMARY") is None
    assert et_io.append_text(summary, "b\n", "GITHUB_STEP_SUMMARY") is None
    assert summary.read_text() == "a\nb\n"
    assert "is a folder" in et_io.append_text(tmp_path, "x", "GITHUB_STEP_SUMMARY")
    assert "cannot append" in et_io.append_text(tmp_path / "no" / "such", "x", "GITHUB_STEP_SUMMARY")
