"""Issue 37, item 1: two writers into one ``--out`` at once. The one that loses the run lock is
refused (exit 2) and deletes nothing: before, the losing ``import`` removed the winner's
``.partial`` on its way out (exit 70 and 2, nothing left)."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import race_lib

from edgetransfer.errors import ConfigError
from edgetransfer.training import rundir


@pytest.mark.parametrize("hold_s", [0.0, 0.05, 0.3])
def test_two_claims_at_once_one_wins_and_its_folder_is_complete(tmp_path, hold_s):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold TensorFlow's threads
    with ctx.Pool(2) as pool:
        for i in range(8):
            out = tmp_path / f"r{i}"
            start = time.time() + 0.5
            results = pool.starmap(race_lib.claim_and_write, [(str(out), hold_s, start)] * 2)
            assert results.count("ok") >= 1, results
            for r in results:
                assert r == "ok" or "run directory already exists" in r or "live import" in r or "finished" in r, r
            assert (out / "a.txt").read_text() == "a" and (out / "manifest.json").is_file(), results
            assert not (out / ".lock").exists() and not out.with_name(out.name + ".partial").exists()


def test_the_loser_leaves_a_live_partial_alone(tmp_path):
    out = tmp_path / "run"
    with rundir.claim(out, False, "import", keep_on_error=False) as partial:
        (partial / "model.keras").write_text("half")
        for _ in range(2):  # refused while the winner works: nothing of the winner's is removed
            with (
                pytest.raises(ConfigError, match="a live import"),
                rundir.claim(out, False, "import", keep_on_error=False),
            ):
                pass
        assert (partial / "model.keras").read_text() == "half"
    assert (out / "model.keras").is_file() and not (out / ".lock").exists()
    with pytest.raises(ConfigError, match="already exists"), rundir.claim(out, False, "import", keep_on_error=False):
        pass
    assert (out / "model.keras").is_file()


def test_a_writer_that_comes_after_the_rename_is_refused_and_leaves_no_partial(tmp_path, monkeypatch):
    """The interleaving of the bug: the loser passes its first checks, the winner renames its folder,
    then the loser takes the lock of a fresh ``.partial``: it must see the finished run and go."""
    out = tmp_path / "run"
    partial = rundir.prepare(out, False)  # the loser's checks pass: nothing there yet
    with rundir.claim(out, False, "import") as p:  # the winner, start to finish
        (p / "manifest.json").write_text("{}")
    monkeypatch.setattr(rundir, "prepare", lambda out, resume: partial)
    with pytest.raises(ConfigError, match="already exists"), rundir.claim(out, False, "import", keep_on_error=False):
        pass
    assert (out / "manifest.json").is_file() and not partial.exists()


def test_a_failed_start_is_cleared_only_under_the_lock(tmp_path):
    out = tmp_path / "run"
    partial = out.with_name("run.partial")
    with rundir.locked(partial, "training run"):  # a live run before its first checkpoint
        (partial / "config.json").write_text("{}")
        with pytest.raises(ConfigError, match="a live training run"), rundir.claim(out, False):
            pass
        assert (partial / "config.json").is_file()  # before: prepare() removed it, lock or not
    with rundir.claim(out, False) as p:  # now a failed start: cleared, then used
        assert sorted(x.name for x in p.iterdir()) == [rundir.LOCK_FILE]
        (p / "manifest.json").write_text("{}")


def test_an_export_into_a_folder_another_export_is_writing_is_refused(untrained_run, tmp_path):
    from edgetransfer.exporter import export

    out = tmp_path / "export"
    with rundir.locked(out, "export", remove=True):
        with pytest.raises(ConfigError, match="a live export"):
            export(untrained_run, out=out)
        assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK_FILE]
    arts = export(untrained_run, out=out)
    assert arts[0].path.is_file() and not (out / rundir.LOCK_FILE).exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["import", "export", "train"])
def test_two_commands_into_one_out(tmp_path, kind):
    """Real processes, 2 rounds each (benchmarks/race_rounds.py runs 20)."""
    from conftest import make_folder, make_split_folder, tiny_keras_model

    data = make_split_folder(tmp_path / "images")
    model = tmp_path / "user.keras"
    tiny_keras_model().save(model)
    base = tmp_path / "base"
    imp = ["import", model, "--data", data / "val", "--preprocess", "none", "--out"]
    if kind == "export":
        assert race_lib.race([*imp, base], base, race_lib.run_complete).ok
    small = make_folder(tmp_path / "small", {"a": 6, "b": 6}, size=(32, 32))
    for i in range(2):
        out = tmp_path / kind / f"r{i}"
        cmd = {
            "import": [*imp, out],
            "export": ["export", base, "--format", "tflite", "--out", out],
            "train": ["train", "--data", small, *race_lib.TRAIN, "--out", out],
        }[kind]
        result = race_lib.race(cmd, out, race_lib.export_complete if kind == "export" else race_lib.run_complete)
        assert result.ok, result


def test_a_second_run_of_one_pipeline_file_is_refused_and_clears_nothing(tmp_path):
    """``edgetransfer run`` clears its run and export folders before training again: a second run of
    the same file while the first works would have deleted the first's ``run.partial``."""
    from edgetransfer.flows import pipeline
    from edgetransfer.io import locked

    pipe = tmp_path / "pipeline.yaml"
    pipe.write_text("data: images\nout: out\n")
    out = tmp_path / "out"
    live = out / "run.partial"
    live.mkdir(parents=True)
    (live / "backup_1").mkdir()
    with locked(out, "pipeline run", remove=True), pytest.raises(ConfigError, match="a live pipeline run"):
        pipeline.run(pipeline.Flow.from_yaml(pipe))
    assert (live / "backup_1").is_dir()
