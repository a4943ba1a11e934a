"""validate and check on a real trained run: records, provenance, reports, every exit code."""

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgetransfer.flows.validate import validate
from edgetransfer.gate.stats import decide


@pytest.fixture(scope="module")
def data_dir(untrained_run):
    return untrained_run.manifest.data.root


def test_validate_json_records_and_provenance(invoke, untrained_exports, data_dir, tmp_path):
    files = [
        untrained_exports[("tflite", "fp32")].path,
        untrained_exports[("tflite", "int8")].path,
        untrained_exports[("onnx", "int8")].path,
    ]
    code, out, err = invoke(
        "validate",
        *files,
        "--data",
        data_dir,
        "--target",
        "host-cpu",
        "--target",
        "pixel4-cpu",
        "--skip-incompatible",
        "--budget-s",
        "0.2",
        "--report",
        tmp_path / "r.html",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)  # the whole report, not only the records (#11)
    assert {"held_out", "reference", "best", "findings", "records", "targets"} <= set(doc)
    assert doc["held_out"]["images"] > 0 and doc["reference"]["accuracy"] > 0
    assert doc["targets"]["host-cpu"].endswith("host-cpu.yaml")
    recs = doc["records"]
    keys = {
        "artifact",
        "format",
        "precision",
        "target",
        "accuracy",
        "agreement",
        "size_bytes",
        "latency_ms",
        "provenance",
    }
    assert all(keys <= set(r) for r in recs)
    prov = {(Path(r["artifact"]).name, r["target"]): r["provenance"] for r in recs}
    assert prov[("model_fp32.tflite", "host-cpu")] == "measured"
    assert prov[("model_fp32.tflite", "pixel4-cpu")] == "estimated"
    assert ("model_int8.onnx", "pixel4-cpu") not in prov  # pixel4-cpu runs tflite only: skipped
    fp32 = next(r for r in recs if r["artifact"].endswith("model_fp32.tflite") and r["target"] == "host-cpu")
    assert (
        fp32["agreement"] == 1.0
        and fp32["latency_ms"]["p50"] <= fp32["latency_ms"]["p90"] <= fp32["latency_ms"]["p99"]
    )
    page = (tmp_path / "r.html").read_text()
    assert page.count("<img") >= 3 and "estimated" in page and "measured" in page


def test_model_the_target_cannot_run_is_exit_2(invoke, untrained_exports, data_dir):
    code, _, err = invoke(
        "validate", untrained_exports[("tflite", "fp32")].path, "--data", data_dir, "--target", "edgetpu"
    )
    assert code == 2 and "cannot run on target edgetpu" in err and "int8" in err
    code, _, err = invoke(
        "check", untrained_exports[("tflite", "fp32")].path, "--target", "edgetpu", "--max-latency-ms", "5"
    )
    assert code == 2 and "edgetpu" in err


def test_validate_report_python_api(untrained_exports, data_dir, tmp_path):
    rep = validate([untrained_exports[("tflite", "int8")].path], data_dir, ["host-cpu", "edgetpu"], budget_s=0.2)
    assert set(rep.best) == {"host-cpu", "edgetpu"}
    # the float predictions stored with the export are the reference (no Keras run, so no Keras latency)
    assert rep.reference.model.endswith("reference.npz") and rep.reference.latency is None
    tpu = next(r for r in rep.records if r.target == "edgetpu")
    assert tpu.compatibility["full"] and tpu.latency.provenance == "estimated"
    from edgetransfer import report

    md = report.write(rep, tmp_path / "r.md").read_text()
    assert "| model_int8_iouint8.tflite | edgetpu |" in md


# --- check: exit codes ---------------------------------------------------------------------


def test_check_passes_with_generous_budgets(invoke, untrained_exports, data_dir, tmp_path):
    art = untrained_exports[("tflite", "int8")].path
    code, out, err = invoke(
        "check",
        art,
        "--data",
        data_dir,
        "--max-latency-ms",
        "500",
        "--max-accuracy-drop",
        "50",
        "--max-size-mb",
        "50",
        "--budget-s",
        "0.2",
        "--junit",
        tmp_path / "j.xml",
        "--json",
    )
    assert code == 0, err
    v = json.loads(out)
    assert v["status"] == "passed" and {c["name"] for c in v["checks"]} == {"latency_p90", "accuracy_drop", "size"}
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "3" and suite.get("failures") == "0"
    assert [c.get("name") for c in suite.iter("testcase")] == ["latency_p90", "accuracy_drop", "size"]


def test_check_fails_naming_budget_figure_and_margin(invoke, untrained_exports, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    art = untrained_exports[("tflite", "int8")].path
    code, out, _ = invoke("check", art, "--max-size-mb", "0.001", "--junit", tmp_path / "j.xml", "--github-summary")
    assert code == 1
    assert "FAILED" in out and "size:" in out and "over the budget 0.001 MB" in out and "margin -" in out
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "1" and suite.find("testcase/failure") is not None
    assert "| size | ❌ failed |" in summary.read_text()


def test_check_inconclusive_when_noise_straddles_budget(invoke, untrained_exports, tmp_path):
    from edgetransfer.runtime.__main__ import bench

    art = untrained_exports[("tflite", "int8")].path
    p90s = [bench(str(art), 1, 0.2, 2, 10, "cpu").p90 for _ in range(4)]  # real, noisy measurements
    samples = tmp_path / "bench.jsonl"
    digest = hashlib.sha256(art.read_bytes()).hexdigest()  # samples name the file they measured (#13)
    samples.write_text("\n".join(json.dumps({"p90": v, "sha256": digest}) for v in p90s))
    budget = sum(p90s) / len(p90s)  # inside the measured noise by construction
    code, out, _ = invoke("check", art, "--max-latency-ms", f"{budget}", "--latency-samples", samples, "--json")
    assert code == 4 and json.loads(out)["status"] == "inconclusive"
    code, _, _ = invoke("check", art, "--max-latency-ms", f"{max(p90s) * 100}", "--latency-samples", samples)
    assert code == 0


def test_relative_budget(invoke, untrained_exports):
    art, ref = untrained_exports[("tflite", "int8")].path, untrained_exports[("tflite", "fp32")].path
    code, out, err = invoke(
        "check", art, "--max-latency-ratio", "20", "--reference", ref, "--budget-s", "0.2", "--json"
    )
    assert code == 0, err
    chk = json.loads(out)["checks"][0]
    assert chk["name"] == "latency_ratio" and 0 < chk["figure"] < 20 and "model_fp32.tflite" in chk["message"]
    code, _, _ = invoke("check", art, "--max-latency-ratio", "0.001", "--reference", ref, "--budget-s", "0.2")
    assert code == 1


def test_toolchain_failure_is_exit_3(invoke, untrained_exports, tmp_path):
    src = untrained_exports[("tflite", "fp32")]
    broken = tmp_path / "model_fp32.tflite"
    broken.write_bytes(b"\0" * 256)
    manifest = json.loads(src.path.with_name(src.path.name + ".manifest.json").read_text())
    # a manifest that matches the file (sha256), so the runtime itself is what fails
    manifest.update(sha256=hashlib.sha256(broken.read_bytes()).hexdigest(), size_bytes=256)
    (tmp_path / "model_fp32.tflite.manifest.json").write_text(json.dumps(manifest))
    code, _, err = invoke("check", broken, "--max-latency-ms", "100")
    assert code == 3 and "LiteRT could not load" in err


def test_decide_is_a_confidence_interval():
    assert decide([10.0, 10.1, 9.9], 12) == "passed"
    assert decide([10.0, 10.1, 9.9], 8) == "failed"
    assert decide([10.0, 10.1, 9.9], 10.0) == "inconclusive"
    assert decide([10.0], 10.5) == "inconclusive"  # one sample says nothing about noise


def test_validate_writes_measurements_that_check_judges_from_report(invoke, untrained_exports, tmp_path):
    """validation.json beside the files; --from-report gives the verdict gate.judge gives on those numbers."""
    from edgetransfer import gate, targets
    from edgetransfer.records import Budget
    from edgetransfer.records.measure import ValidationReport

    art = untrained_exports[("tflite", "int8")].path
    code, _, err = invoke("validate", art, "--budget-s", "0.3")
    assert code == 0, err
    report = ValidationReport.read(art.parent / "validation.json")
    (m,) = [r for r in report.records if r.artifact == str(art)]
    assert len(m.p90_repeats) == 3 and m.latency is not None and m.runtime
    for limit in (m.latency.p90 * 100, m.latency.p90 / 100):
        want = gate.judge(m, gate.budget_for(targets.get("host-cpu"), Budget(latency_p90_ms=limit)))
        code, out, err = invoke(
            "check",
            "--from-report",
            art.parent / "validation.json",
            art.name,
            "--max-latency-ms",
            str(limit),
            "--json",
        )
        assert code == want.exit_code, err
        assert json.loads(out)["checks"] == [c.to_json() for c in want.checks]


def test_peak_memory_budget_is_measured_in_a_child(invoke, untrained_exports):
    art = untrained_exports[("tflite", "fp32")].path
    code, out, err = invoke("check", art, "--max-peak-memory-mb", "4000", "--max-accuracy-drop", "100", "--json")
    assert code == 0, err
    chk = next(c for c in json.loads(out)["checks"] if c["name"] == "peak_memory")
    assert 0 < chk["figure"] < 4000
    code, _, err = invoke("check", art, "--target", "pixel4-gpu", "--max-peak-memory-mb", "100")
    assert code == 2 and "peak_memory_mb" in err
