"""The CI decision as a pure function: budgets merged by one rule, measurements judged with no
model loaded, records that round-trip, and ``check --from-report`` importing no runtime."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgetransfer import gate, targets
from edgetransfer.errors import ConfigError
from edgetransfer.flows.check import judge_report
from edgetransfer.gate.stats import decide, interval
from edgetransfer.records import Budget
from edgetransfer.records.measure import Best, Check, Measurement, Reference, ValidationReport, Verdict
from edgetransfer.records.vocab import Status
from edgetransfer.runtime.latency import Latency


def _lat(p90: float, prov: str = "measured", samples=(1.0, 2.0)) -> Latency:
    return Latency(
        p90 * 0.9, p90, p90 * 1.1, p90, 0.1, len(samples), prov, samples=samples, detail={"runtime": "litert"}
    )


def _m(**kw) -> Measurement:
    base = dict(
        artifact="/x/model_int8.tflite",
        format="tflite",
        precision="int8",
        target="host-cpu",
        size_bytes=2_000_000,
        latency=_lat(10.0),
        p90_repeats=(10.0, 10.1, 9.9),
        accuracy=0.9,
        accuracy_drop=0.4,
    )
    base.update(kw)
    return Measurement(**base)


def test_budget_merge_is_profile_then_pipeline_then_cli():
    profile = Budget(latency_p90_ms=15, accuracy_drop=1.0, size_mb=20)
    pipeline = Budget(latency_p90_ms=12)
    cli = Budget(size_mb=5, accuracy_drop=0)
    got = Budget.merge(profile, pipeline, cli)
    assert got == Budget(latency_p90_ms=12, accuracy_drop=0, size_mb=5)
    assert Budget.merge(profile, None, Budget()) == profile  # unset fields never erase
    assert Budget.merge() == Budget()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, True, "3"])
def test_budget_refuses_nonsense(bad):
    with pytest.raises(ConfigError):
        Budget(latency_p90_ms=bad)


def test_zero_accuracy_drop_is_a_budget():
    assert Budget(accuracy_drop=0).accuracy_drop == 0


def test_budget_for_a_profile_and_mcu_defaults():
    host = targets.get("host-cpu")
    assert gate.budget_for(host, Budget(size_mb=3)).accuracy_drop == host.budgets.accuracy_drop
    assert gate.budget_for(host, accuracy=False).accuracy_drop is None  # no held-out data: left out
    assert gate.budget_for(host, Budget(accuracy_drop=2), accuracy=False).accuracy_drop == 2  # explicit stays
    mcu = targets.get("stm32h7")
    b = gate.budget_for(mcu)
    assert b.ram_kb == mcu.budgets.ram_kb and b.flash_kb == mcu.budgets.flash_kb
    with pytest.raises(ConfigError, match="microcontroller"):
        gate.budget_for(host, Budget(ram_kb=100))


def test_judge_latency_by_interval_of_repeats():
    assert gate.judge(_m(), Budget(latency_p90_ms=12)).status == Status.PASSED
    assert gate.judge(_m(), Budget(latency_p90_ms=8)).status == Status.FAILED
    assert gate.judge(_m(), Budget(latency_p90_ms=10.0)).status == Status.INCONCLUSIVE
    v = gate.judge(_m(), Budget(latency_p90_ms=8))
    assert v.exit_code == 1 and "over the budget 8 ms" in v.checks[0].message


def test_unstable_host_is_inconclusive_not_failed():
    m = _m(p90_repeats=(6.0, 14.0, 13.0))  # 2.3x spread, budget inside the range
    chk = gate.judge(m, Budget(latency_p90_ms=9)).checks[0]
    assert chk.status == Status.INCONCLUSIVE and "unstable" in chk.message


def test_estimates_are_compared_as_they_are():
    m = _m(latency=_lat(5.0, "estimated"), p90_repeats=())
    assert gate.judge(m, Budget(latency_p90_ms=6)).status == Status.PASSED
    assert gate.judge(m, Budget(latency_p90_ms=4)).status == Status.FAILED


def test_every_budget_kind():
    m = _m(memory={"arena_bytes": 200 * 1024, "flash_bytes": 300 * 1024, "arena_in": "sram"}, peak_memory_mb=40.0)
    v = gate.judge(m, Budget(accuracy_drop=0.5, size_mb=1, peak_memory_mb=50, ram_kb=100, flash_kb=400))
    status = {c.name: c.status for c in v.checks}
    assert status == {
        "accuracy_drop": Status.PASSED,
        "size": Status.FAILED,
        "peak_memory": Status.PASSED,
        "ram": Status.FAILED,
        "flash": Status.PASSED,
    }
    assert v.exit_code == 1


def test_budgets_without_figures_are_refused_not_skipped():
    with pytest.raises(ConfigError, match="peak_memory_mb"):
        gate.judge(_m(latency=_lat(5.0, "estimated")), Budget(peak_memory_mb=10))
    with pytest.raises(ConfigError, match="reference"):
        gate.judge(_m(), Budget(latency_ratio=2))
    with pytest.raises(ConfigError, match="no budget"):
        gate.judge(_m(), Budget())


def test_ratio_from_interleaved_repeats():
    m = _m(ratio_reference="/x/model_fp32.tflite", ratio_repeats=(0.5, 0.52, 0.49))
    chk = gate.judge(m, Budget(latency_ratio=0.8)).checks[0]
    assert chk.status == Status.PASSED and "model_fp32.tflite" in chk.message


def test_interval_never_goes_negative():
    _, low, _ = interval([0.1, 5.0, 0.2])
    assert low >= 0
    assert decide([10.0], 10.5) == "inconclusive"


def _report(tmp_path: Path, measurements) -> Path:
    rep = ValidationReport(
        held_out={"source": "d", "split": "val", "images": 10},
        reference=Reference(0.9, "model.keras", _lat(30.0)),
        records=tuple(measurements),
        best={"host-cpu": Best("/x/model_int8.tflite", 9.0, "measured", 0.9, "litert")},
        classes=("a", "b"),
    )
    path = tmp_path / "validation.json"
    path.write_text(json.dumps(rep.to_json()))
    return path


def test_records_round_trip_and_refuse_unknown_keys(tmp_path):
    path = _report(tmp_path, [_m()])
    doc = json.loads(path.read_text())
    assert doc["kind"] == "edgetransfer.validation" and doc["records"][0]["latency_ms"]["p90"] == 10.0
    rep = ValidationReport.from_json(doc)
    assert rep.records[0] == _m() and rep.best["host-cpu"].runtime == "litert"
    v = Verdict("a", "t", (Check("size", Status.FAILED, 1.0, 0.5, "MB", "measured"),))
    assert Verdict.from_json(json.loads(json.dumps(v.to_json()))) == v
    doc["records"][0]["surprise"] = 1
    with pytest.raises(ConfigError, match="unknown keys"):
        ValidationReport.from_json(doc)
    with pytest.raises(ConfigError, match="schema 2"):
        ValidationReport.from_json({**json.loads(path.read_text()), "schema": 2})


def test_judge_report_equals_judge_of_the_same_numbers(tmp_path):
    m = _m()
    path = _report(tmp_path, [m, _m(target="pixel4-cpu")])
    for budget in (Budget(latency_p90_ms=12), Budget(latency_p90_ms=8), Budget(latency_p90_ms=10.0)):
        live = gate.judge(m, gate.budget_for(targets.get("host-cpu"), budget))
        (judged,) = judge_report(path, "host-cpu", budget=budget)
        assert judged.checks == live.checks and judged.exit_code == live.exit_code


def test_check_from_report_cli_loads_no_runtime(tmp_path):
    """The CLI judges a report with exit 0 / 1 / 4 and JUnit, and no runtime or TensorFlow is imported."""
    path = _report(tmp_path, [_m()])
    junit = tmp_path / "j.xml"
    code = textwrap.dedent(
        f"""
        import sys
        from edgetransfer.cli import cli
        codes = []
        for limit in ("12", "8", "10"):
            try:
                cli(["check", "--from-report", {str(path)!r}, "--max-latency-ms", limit,
                     "--max-accuracy-drop", "1", "--junit", {str(junit)!r}], prog_name="edgetransfer")
            except SystemExit as e:
                codes.append(e.code)
        heavy = [m for m in ("tensorflow", "onnxruntime", "ai_edge_litert", "openvino", "tflite_micro", "keras")
                 if m in sys.modules]
        print(codes, heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[0, 1, 4] []", out.stdout + out.stderr
    assert "<testsuite" in junit.read_text()


def test_junit_never_keeps_a_stale_pass(tmp_path):
    """The JUnit file is replaced by an error case before any work starts, so a check that dies
    (a native crash on a hostile file) leaves an error, not the previous run's pass."""
    path = _report(tmp_path, [_m()])
    junit = tmp_path / "j.xml"
    junit.write_text('<testsuite name="edgetransfer.check" tests="1" failures="0" errors="0"></testsuite>')
    code = (
        "import os, sys\n"
        "from edgetransfer.report import junit\n"
        "real = junit.junit_xml\n"
        "def die(v):\n"
        "    os._exit(134)  # stands for a SIGABRT mid-check, after the pending case was written\n"
        "junit.junit_xml = die\n"
        "import edgetransfer.cli.check as c\n"
        "c.junit_xml = die\n"
        "from edgetransfer.cli import cli\n"
        f"cli(['check', '--from-report', {str(path)!r}, '--max-latency-ms', '12', '--junit', {str(junit)!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 134
    text = junit.read_text()
    assert 'errors="1"' in text and "did not finish" in text
