"""`check` and `validate` on a `measure: runner` target use the device's figures (#12, #17), from a
profile the user pointed at; the device is a stand-in command (no phone or Pi is reachable here)."""

from __future__ import annotations

import json
import sys

from conftest import REPO


def _profile(folder, runner: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "board.yaml").write_text(
        "name: board\ndescription: a device reached by a runner\nruntime: litert\nformats: [tflite]\n"
        "precisions: [fp32, int8]\nmeasure: runner\nthreads: 1\n"
        f"runner: {{kind: command, template: {json.dumps(runner)}, timeout_s: 120}}\nsources: [stand-in]\n"
    )
    return folder


BENCH = f"{sys.executable} -m edgetransfer.runtime bench {{model}} --threads {{threads}} --budget-s 0.2 --json"


def test_check_on_a_runner_target_gates_the_device_figures(invoke, untrained_exports, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    art = untrained_exports[("tflite", "int8")].path
    d = _profile(tmp_path / "profiles", BENCH)
    code, out, err = invoke(
        "check",
        art,
        "--target",
        "board",
        "--targets-dir",
        d,
        "--max-latency-ms",
        "500",
        "--repeats",
        "2",
        "--max-repeats",
        "2",
        "--json",
    )
    assert code == 0, err
    chk = json.loads(out)["checks"][0]
    assert chk["provenance"] == "on-device" and 0 < chk["figure"] < 500


def test_runner_from_the_current_folder_is_not_run(invoke, untrained_exports, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    _profile(tmp_path / "targets", f"touch {marker}")
    monkeypatch.chdir(tmp_path)
    art = untrained_exports[("tflite", "int8")].path
    code, _, err = invoke("check", art, "--target", "board", "--max-latency-ms", "500")
    assert code == 2 and "not in a file you pointed at" in err and "--targets-dir" in err
    assert not marker.exists()
