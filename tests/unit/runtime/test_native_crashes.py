"""Issue 37, item 3: native crashes. A manifest beside a file is no reason to load it in-process
(a forger writes the manifest too, sha256 included): ``Classifier`` probes every file in a child
unless those exact bytes passed a probe before. A cache folder on a full disk is a message and
exit 3, never SIGSEGV (HDF5 failing to write the converted weights killed the process at exit)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_folder

from edgetransfer.errors import ToolchainError
from edgetransfer.io import sha256_file
from edgetransfer.runtime import Classifier, isolate, safe

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)


def forge(path: Path, like: Path) -> Path:
    """What a forger writes beside ``path``: our manifest of ``like`` with ``path``'s sha256."""
    doc = json.loads(like.with_name(like.name + ".manifest.json").read_text())
    doc["sha256"] = sha256_file(path)
    manifest = path.with_name(path.name + ".manifest.json")
    manifest.write_text(json.dumps(doc))
    return manifest


def test_a_forged_manifest_does_not_skip_the_probe(untrained_exports, tmp_path, monkeypatch):
    """Also measures the safe mode's cost (printed; docs/reliability.md quotes it)."""
    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    art = untrained_exports[("tflite", "int8")].path
    copy = tmp_path / "downloaded.tflite"
    copy.write_bytes(art.read_bytes() + b"\0")  # not bytes we wrote
    forge(copy, art)
    assert safe.ours(copy)  # the manifest "matches": that is exactly what proves nothing
    children: list[Path] = []
    real = isolate._run_child
    monkeypatch.setattr(isolate, "_run_child", lambda *a: children.append(a[0]) or real(*a))
    isolate.clear_cache()
    timings = {}
    for name, kw in (("first", {}), ("same process", {}), ("safe=False", {"safe": False})):
        t0 = time.perf_counter()
        Classifier(copy, **kw).classify(IMAGE)
        timings[name] = time.perf_counter() - t0
    assert children == [copy]  # probed once although the manifest "matched"
    isolate.clear_cache()  # as a new process (an app's next start): the recorded pass is used
    t0 = time.perf_counter()
    Classifier(copy).classify(IMAGE)
    timings["next process"] = time.perf_counter() - t0
    assert children == [copy]
    Classifier(copy, safe=True)
    assert children == [copy, copy]  # safe=True probes whatever was recorded
    copy.write_bytes(art.read_bytes() + b"\0\0")  # other bytes: probed again
    forge(copy, art)
    Classifier(copy)
    assert children == [copy, copy, copy]
    print("\nClassifier load+classify (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))


@pytest.mark.slow  # a seeded search for a LiteRT-crashing mutant (about 1 in 40), then one Classifier
def test_a_crashing_mutant_with_a_forged_manifest_is_an_error_not_a_signal(tiny_exports, tmp_path):
    from test_sessions import find_crashing_mutant

    art = tiny_exports[("tflite", "int8")].path  # the trained file: seed 39 crashes LiteRT on it
    hit = find_crashing_mutant(art.read_bytes(), tmp_path)
    if hit is None:
        pytest.skip("no 3-byte mutant crashed LiteRT in 300 tries on this build")
    path = hit[0]
    forge(path, art)
    code = f"from edgetransfer.runtime import Classifier\nClassifier({str(path)!r})"
    env = {**ENV, "EDGETRANSFER_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])  # an exception, not a signal
    assert "RuntimeBackendError" in res.stderr and "crashed with SIG" in res.stderr


def test_weights_are_not_converted_into_a_full_temporary_folder(tmp_path, monkeypatch):
    """A stand-in for a full $TMPDIR (disk_usage reports 0 free): refused before HDF5 writes."""
    from edgetransfer.backbones import weights

    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "w.pth"
    source.write_bytes(b"x" * 1000)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    called = []
    with pytest.raises(ToolchainError, match="no space left on the device of the temporary folder"):
        weights.cached_conversion(source, "t", called.append)
    assert called == []


def _tmpfs_shell(mount: Path, fill_to_kb: int, command: list[str]) -> list[str]:
    """``command`` in a new user and mount namespace with a 24 MiB tmpfs at ``mount``, filled
    until ``fill_to_kb`` KiB are left (no root needed; ``unshare -rm``)."""
    import shlex

    script = (
        f"mount -t tmpfs -o size=24M tmpfs {shlex.quote(str(mount))} && "
        f"avail=$(df -k {shlex.quote(str(mount))} | tail -1 | awk '{{print $4}}') && "
        f"dd if=/dev/zero of={shlex.quote(str(mount / 'fill'))} bs=1k count=$((avail-{fill_to_kb})) 2>/dev/null; "
        f"exec {shlex.join(command)}"
    )
    return ["unshare", "-rm", "sh", "-c", script]


@pytest.mark.slow  # loads TensorFlow and builds Lite0 in a child
def test_train_with_the_cache_on_a_full_disk_is_exit_3_not_sigsegv(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("no user namespaces here to mount a small tmpfs")
    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=(32, 32))
    mount = tmp_path / "small"
    mount.mkdir()
    cmd = [sys.executable, "-m", "edgetransfer", "train", "--data", str(data), "--image-size", "32"]
    cmd += ["--epochs", "1", "--workflow", "features", "--out", str(tmp_path / "run")]
    env = {**ENV, "EDGETRANSFER_CACHE": str(mount / "cache")}
    res = subprocess.run(_tmpfs_shell(mount, 2000, cmd), capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 3, (res.returncode, res.stderr[-2000:])  # before: -11 / 139, SIGSEGV at exit
    assert "no space left on the device" in res.stderr and "EDGETRANSFER_CACHE" in res.stderr
