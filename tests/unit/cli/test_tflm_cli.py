"""Microcontrollers through the CLI (#14): export --format tflm, validate on esp32-s3 in the real
TFLM kernels, check on stm32h7 failing its flash with both figures."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def int8(untrained_exports):
    return untrained_exports[("tflite", "int8")].path


def test_export_tflm_writes_c_source_beside_the_int8_file(untrained_run, invoke, tmp_path):
    code, _, err = invoke(
        "export",
        untrained_run.run_dir,
        "--format",
        "tflm",
        "--precision",
        "int8",
        "--calibration-size",
        "12",
        "--out",
        tmp_path / "x",
    )
    assert code == 0, err
    bundle = tmp_path / "x" / "tflm" / "model_int8_iouint8"
    header = (bundle / "model_data.h").read_text()
    assert "kTensorArenaSize" in header and "MicroMutableOpResolver" in header
    assert "alignas(16)" in (bundle / "model_data.cc").read_text()
    assert json.loads((bundle / "tflm_manifest.json").read_text())["arena_bytes"] > 0
    code, _, err = invoke(
        "export", untrained_run.run_dir, "--format", "tflm", "--precision", "fp32", "--out", tmp_path / "y"
    )
    assert code == 2 and "int8" in err and not (tmp_path / "y" / "tflm").exists()


def test_validate_on_an_mcu_runs_tflm_and_measures_the_arena(invoke, int8):
    code, out, err = invoke(
        "validate", int8, "--target", "esp32-s3", "--target", "host-cpu", "--budget-s", "0.1", "--json"
    )
    assert code == 0, err
    recs = {r["target"]: r for r in json.loads(out)["records"]}
    mcu = recs["esp32-s3"]
    assert mcu["memory"]["arena_bytes"] > 0 and mcu["memory"]["flash_bytes"] == recs["host-cpu"]["size_bytes"]
    assert mcu["provenance"] == "estimated"
    assert mcu["accuracy"] == recs["host-cpu"]["accuracy"]  # TFLM kernels agree with LiteRT's int8


@pytest.mark.slow
def test_check_on_stm32h7_fails_flash_with_both_sizes(invoke, tiny_exports):
    """A real Lite0 int8 file (about 4 MB) against 2 MB of flash; the tiny test model fits."""
    int8 = tiny_exports[("tflite", "int8")].path
    code, out, err = invoke("check", int8, "--target", "stm32h7", "--json")
    assert code == 1, err
    flash = next(c for c in json.loads(out)["checks"] if c["name"] == "flash")
    assert flash["status"] == "failed" and flash["budget"] == 2048 and flash["figure"] > 2048
    code, _, err = invoke("check", int8, "--target", "host-cpu", "--max-ram-kb", "100")
    assert code == 2 and "microcontroller" in err
