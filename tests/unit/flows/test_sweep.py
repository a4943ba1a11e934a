"""``edgetransfer sweep``: one tiny Lite0 sweep (2 sizes x 2 precisions) shared by the end-to-end,
resume and budget tests; the bad-input exits and the front/pick rules need no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_folder

from edgetransfer.errors import ConfigError
from edgetransfer.flows.grid import plan_grid
from edgetransfer.flows.pareto import pareto_front, pick
from edgetransfer.records import Budget, SweepPoint, SweepResult, SweepState, TargetLatency
from edgetransfer.training import TrainConfig

TARGETS = ("host-cpu", "pixel4-cpu")


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["sweep", "--data", str(data), "--out", str(out), "--backbone", "efficientnet_lite0"]
    args += ["--image-size", "32", "--image-size", "48", "--precision", "fp16", "--precision", "int8"]
    args += [x for t in TARGETS for x in ("--target", t)]
    return [*args, "--epochs", "2", "--calibration-size", "8", "--budget-s", "0.1", "--json", *extra]


def _run(*args: str) -> tuple[int, str, str]:
    from edgetransfer.cli import cli

    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    data = make_folder(root / "data", {"red": 6, "blue": 6})
    code, out, err = _run(*_args(data, root / "out"))
    assert code == 0, err
    return data, root / "out", json.loads(out)


def _dominated(doc: dict, i: int, t: str) -> bool:
    a = doc["configs"][i]
    return any(
        c["accuracy"] >= a["accuracy"]
        and c["latency"][t]["p50_ms"] <= a["latency"][t]["p50_ms"]
        and (c["accuracy"] > a["accuracy"] or c["latency"][t]["p50_ms"] < a["latency"][t]["p50_ms"])
        for c in doc["configs"]
        if t in c["latency"]
    )


@pytest.mark.slow
def test_two_size_sweep_end_to_end(swept):
    from edgetransfer.flows.pipeline import Flow

    _, out, doc = swept
    assert set(doc) >= {"configs", "pareto", "best"}
    assert [(c["image_size"], c["precision"]) for c in doc["configs"]] == [
        (32, "fp16"),
        (32, "int8"),
        (48, "fp16"),
        (48, "int8"),
    ]
    for c in doc["configs"]:
        assert set(c) >= {"backbone", "image_size", "precision", "accuracy", "accuracy_drop", "size_bytes", "macs"}
        assert set(c["latency"]) == set(TARGETS) and c["macs"] > 0 and c["size_bytes"] > 0
        assert c["latency"]["pixel4-cpu"]["provenance"] == "estimated"
        assert c["latency"]["host-cpu"]["provenance"] == "measured"
    assert doc["configs"][2]["macs"] > doc["configs"][0]["macs"]  # MACs grow with the input size
    for t in TARGETS:
        front = doc["pareto"][t]
        assert front and all(0 <= i < len(doc["configs"]) for i in front)
        assert not any(_dominated(doc, i, t) for i in front)
        assert all(_dominated(doc, i, t) for i in range(len(doc["configs"])) if i not in front)
        _assert_best_within_budget(doc, t)
        Flow.from_yaml(doc["pipelines"][t])  # the pick's pipeline.yaml is a valid pipeline
    assert (out / "report.html").read_text().count("data:image/png;base64") == 1
    res = SweepResult.read(out / "sweep.json")  # the file is the record, its pipelines exist
    assert res.targets == TARGETS and res.configs[0].seconds > 0 and res.stats.compute_seconds > 0
    for f in (out / "configs").glob("*.json"):
        SweepPoint.read(f)


def _assert_best_within_budget(doc: dict, t: str) -> None:
    """The pick meets every budget and no configuration that meets them is more accurate."""
    b, lim = doc["best"][t], doc["budgets"][t]

    def ok(c: dict) -> bool:
        return (
            (lim["max_latency_ms"] is None or c["latency"][t]["p90_ms"] <= lim["max_latency_ms"])
            and (lim["max_size_mb"] is None or c["size_bytes"] / 1e6 <= lim["max_size_mb"])
            and (lim["max_accuracy_drop"] is None or c["accuracy_drop"] <= lim["max_accuracy_drop"])
        )

    within = [c for c in doc["configs"] if t in c["latency"] and ok(c)]
    if b is None:
        assert not within
    else:
        assert ok(doc["configs"][b]) and all(c["accuracy"] <= doc["configs"][b]["accuracy"] for c in within)


@pytest.mark.slow
def test_every_json_the_sweep_writes_is_a_record(swept):
    from records_walk import every_json_is_a_record

    _, out, _ = swept
    kinds = every_json_is_a_record(out)
    assert {"edgetransfer.sweep", "edgetransfer.sweep-point", "edgetransfer.run", "edgetransfer.artifact"} <= set(
        kinds
    ), kinds


@pytest.mark.slow
def test_rerun_recomputes_nothing(swept):
    data, out, first = swept
    code, stdout, err = _run(*_args(data, out))
    assert code == 0, err
    s = json.loads(stdout)["stats"]
    assert (s["computed"], s["reused"], s["trained"], s["exported"]) == (0, 4, 0, 0)
    assert json.loads(stdout)["configs"] == first["configs"]
    # the report keeps what computing them cost the first time, not "0 computed ... 0 s"
    assert s["compute_seconds"] == first["stats"]["compute_seconds"] > 0
    assert f"took {s['compute_seconds']:.0f} s in all" in (out / "report.html").read_text()


@pytest.mark.slow
def test_a_second_sweep_elsewhere_converts_and_predicts_nothing_again(swept, tmp_path):
    """A fresh --out with the same cache: the seeded heads come out the same, so every converted file
    and every prediction comes from the memo (byte-identical files); latency is measured again."""
    data, out, first = swept
    code, stdout, err = _run(*_args(data, tmp_path / "again"))
    assert code == 0, err
    doc = json.loads(stdout)
    s = doc["stats"]
    assert s["trained"] == 2 and s["feature_misses"] == 0 and s["memo_misses"] == 0 and s["memo_hits"] >= 4
    for a, b in zip(first["configs"], doc["configs"], strict=True):
        assert (a["accuracy"], a["size_bytes"]) == (b["accuracy"], b["size_bytes"])
    again = sorted((tmp_path / "again" / "exports").rglob("model_*.manifest.json"))
    assert len(again) == 4
    for m in again:
        man = json.loads(m.read_text())
        assert man["converter"]["from"] == "memo"
        before = out / m.relative_to(tmp_path / "again")
        assert man["sha256"] == json.loads(before.read_text())["sha256"]


@pytest.mark.slow
def test_a_second_sweep_into_a_live_sweeps_folder_is_refused(swept):
    from edgetransfer.training.rundir import locked

    data, out, _ = swept
    with locked(out, "sweep"):  # as a live sweep holds it (released by the OS even on kill -9)
        code, stdout, err = _run(*_args(data, out))
    assert code == 2 and "a live sweep" in stdout + err and "--out" in stdout + err


def test_memo_entries_are_verified_and_never_unpickled(tmp_path):
    import io

    import numpy as np

    from edgetransfer.memo import Memo, digest

    memo = Memo(tmp_path)
    key = digest("x", np.arange(3))
    assert key != digest("x", np.arange(3.0)) and memo.get_bytes("exports", key) is None
    memo.put_bytes("exports", key, b"flatbuffer")
    assert memo.get_bytes("exports", key) == b"flatbuffer"
    entry = next((tmp_path / "exports").rglob(key))
    entry.write_bytes(b"Flatbuffer" + entry.read_bytes()[10:])  # edited: its sha256 no longer matches
    assert memo.get_bytes("exports", key) is None and not entry.exists()
    memo.put_array("predictions", key, np.eye(2))
    assert np.array_equal(memo.get_array("predictions", key), np.eye(2))
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    memo.put_bytes("predictions", key, pickled.getvalue())  # an entry that needs pickle to read: refused
    assert memo.get_array("predictions", key) is None


def test_memo_keys_change_with_the_converter_code(tmp_path):
    """A development install that edits a format module between sweeps must not get the old files."""
    import types

    from edgetransfer.memo import source_digest

    pkg = tmp_path / "fmt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tflite.py").write_text("SCALE = 1\n")
    module = types.SimpleNamespace(__file__=str(pkg / "__init__.py"))
    before = source_digest(module)
    assert source_digest(module) == before
    (pkg / "tflite.py").write_text("SCALE = 2\n")
    assert source_digest(module) != before


@pytest.mark.slow
def test_resume_after_kill_recomputes_only_the_unfinished(swept):
    """A ``kill -9`` during the last configuration's export: no record, no artifact manifest."""
    data, out, _ = swept
    (out / "configs" / "efficientnet_lite0-48-int8.json").unlink()
    for m in (out / "exports" / "efficientnet_lite0-48").glob("model_int8*.manifest.json"):
        m.unlink()
    (out / "configs" / ".efficientnet_lite0-48-int8.x.tmp.json").write_text("{torn")  # a torn temp file
    code, stdout, err = _run(*_args(data, out))
    assert code == 0, err
    s = json.loads(stdout)["stats"]
    assert (s["computed"], s["reused"], s["trained"], s["runs_reused"], s["exported"]) == (1, 3, 0, 1, 1)
    assert "resuming: 3 of 4" in err


@pytest.mark.slow
def test_budget_no_configuration_meets_exits_1(swept):
    data, out, _ = swept
    code, stdout, err = _run(*_args(data, out, "--max-latency-ms", "0.0001"))
    assert code == 1
    doc = json.loads(stdout)
    assert doc["best"] == {t: None for t in TARGETS} and doc["stats"]["computed"] == 0
    assert "no configuration meets the budget on pixel4-cpu" in err and "closest is #" in err


@pytest.mark.slow
def test_ctrl_c_then_rerun_with_a_wider_grid(swept):
    """Ctrl-C while a new size validates: its run and exports survive; the rerun only validates it."""
    from edgetransfer import sweep

    data, out, _ = swept
    kw = dict(
        backbones=["efficientnet_lite0"],
        precisions=["fp16", "int8"],
        targets=TARGETS,
        out=out,
        train_config=TrainConfig(epochs=2),
        calibration_size=8,
        budget_s=0.1,
    )

    def interrupt(line: str) -> None:
        if "validating" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(data, image_sizes=[32, 40, 48], progress=interrupt, **kw)
    lines: list[str] = []
    res = sweep(data, image_sizes=[32, 40, 48], progress=lines.append, **kw)
    s = res.stats
    assert (s.computed, s.reused, s.trained, s.runs_reused, s.exported, s.exports_reused) == (2, 4, 0, 1, 0, 2)
    assert len(res.configs) == 6 and res.configs[2].image_size == 40


def test_changed_data_is_detected(tmp_path):
    from edgetransfer.flows.sweep import _compare_state

    grid = plan_grid(["efficientnet_lite0"], [32], ["int8"], ["host-cpu"]).grid
    assert _compare_state(tmp_path, grid, "fp-1", TrainConfig()) == []
    notes = _compare_state(tmp_path, plan_grid(["efficientnet_lite0"], [32, 48], ["int8"], ["host-cpu"]).grid, "fp-2",
                           TrainConfig())  # fmt: skip
    assert any("data changed" in n for n in notes) and any("1 configuration(s) added" in n for n in notes)
    state = SweepState.read(tmp_path / "sweep-state.json")  # the state file is a record
    assert state.data == "fp-2" and state.grid.sizes == {"efficientnet_lite0": (32, 48)}


def test_pipeline_sweep_section(tmp_path):
    from edgetransfer.flows.pipeline import Flow

    p = tmp_path / "pipeline.yaml"
    p.write_text("data: d\nsweep:\n  backbones: [efficientnet_lite0]\n  image_sizes: [32, 48]\n  max_latency_ms: 8\n")
    s = Flow.from_yaml(p).sweep
    assert s is not None and s.image_sizes == (32, 48) and s.max_latency_ms == 8
    p.write_text("data: d\nsweep:\n  backbones: [efficientnet_lite9]\n")
    with pytest.raises(ConfigError, match="unknown backbone"):
        Flow.from_yaml(p)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbone", "efficientnet_lite9"], "unknown backbone"),
        (["--backbone", "efficientnet_lite0", "--target", "pixel9"], "pixel9"),
        (["--backbone", "efficientnet_lite0", "--image-size", "8"], "outside"),
        (["--backbone", "efficientnet_lite0", "--precision", "int4"], "int4"),
        (["--backbone", "efficientnet_lite0", "--max-latency-ms", "-1"], "budget"),
    ],
)
def test_bad_input_exits_2_before_training(tmp_path, extra, message):
    data = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    code, stdout, err = _run("sweep", "--data", str(data), "--out", str(tmp_path / "out"), *extra)
    assert code == 2 and message in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("name", ["../x", "/abs", "a\\nb"])
def test_a_profile_name_that_would_leave_out_exits_2(tmp_path, name):
    """The pick is written under <out>/picks/<profile name>: a name that is not one plain folder
    name is refused before any work, naming the profile."""
    import edgetransfer

    host = Path(edgetransfer.__file__).parent / "profiles" / "host-cpu.yaml"
    prof = tmp_path / "mine.yaml"
    prof.write_text(host.read_text().replace("name: host-cpu", f'name: "{name}"'))
    data = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    code, stdout, err = _run("sweep", "--data", str(data), "--out", str(tmp_path / "out"), "--target", str(prof),
                             "--backbone", "efficientnet_lite0", "--image-size", "32")  # fmt: skip
    assert code == 2 and "usable as one file or folder name" in err and "mine.yaml" in err
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "x").exists()


def test_empty_grid_and_defaults():
    with pytest.raises(ConfigError, match="empty"):
        plan_grid(["efficientnet_lite0"], [32], [], ["host-cpu"])
    grid = plan_grid(None, None, ["int8"], ["host-cpu"]).grid
    assert list(grid.sizes) == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert grid.sizes["efficientnet_lite0"] == (128, 160, 192, 224)
    assert grid.sizes["efficientnet_lite2"] == (128, 160, 192, 224, 260)


def _pt(acc: float, ms: float, drop: float = 0.0, size: int = 1_000_000) -> SweepPoint:
    return SweepPoint("b", 32, "int8", acc, acc, drop, size, 1, {"t": TargetLatency(ms, ms, "estimated")})


def test_front_and_pick_rules():
    pts = [_pt(0.80, 2.0), _pt(0.90, 5.0), _pt(0.85, 6.0), _pt(0.95, 9.0), _pt(0.96, 7.0, drop=3.0)]
    assert pareto_front(pts, "t") == (0, 1, 4)
    assert pick(pts, "t", Budget(latency_p90_ms=8.0, accuracy_drop=1.0)) == (1, 1)
    best, closest = pick(pts, "t", Budget(latency_p90_ms=1.0))
    assert best is None and closest == 0
