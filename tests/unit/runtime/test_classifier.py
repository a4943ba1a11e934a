"""Issue 25: the app-side ``Classifier`` never loads a foreign file in its own process first.

Every file (issue 37: a manifest beside it is no proof) is probed in a child process once under
a memory and time limit (``runtime/safe.py``); input sizes from a graph are capped as they are
from metadata. Each refusal names the file; no signal reaches the caller.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from edgetransfer.errors import (
    EXIT_TOOLCHAIN,
    EXIT_USAGE,
    EdgeTransferError,
    MissingDependencyError,
    RuntimeBackendError,
)
from edgetransfer.runtime import Classifier, isolate

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)


def _onnx(path: Path, *, input_shape, constant_of_shape=None) -> Path:
    """A tiny ONNX classifier: mean over the image -> 2 scores; optionally a ConstantOfShape bomb."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0, axes=[1, 2]),
        helper.make_node("Slice", ["m", "st", "en", "ax"], ["y0"]),
    ]
    inits = [
        helper.make_tensor("st", TensorProto.INT64, [1], [0]),
        helper.make_tensor("en", TensorProto.INT64, [1], [2]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
    ]
    out = "y0"
    if constant_of_shape:
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [len(constant_of_shape)], constant_of_shape))
        nodes += [
            helper.make_node(
                "ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
            ),
            helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
            helper.make_node("Add", ["y0", "s"], ["y"]),
        ]
        out = "y"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_onnx_declaring_a_40000_px_input_is_refused_naming_it(tmp_path):
    path = _onnx(tmp_path / "huge input.onnx", input_shape=[1, 40000, 40000, 3])
    before = _rss_mb()
    for safe_mode in (None, False):  # the graph cap holds in-process too
        isolate.clear_cache()
        with pytest.raises(EdgeTransferError) as err:
            Classifier(path, safe=safe_mode).classify(IMAGE)
        assert err.value.path == str(path) and err.value.exit_code in (EXIT_USAGE, EXIT_TOOLCHAIN)
        assert "40000" in err.value.problem
    assert _rss_mb() - before < 500


def test_onnx_constant_of_shape_bomb_stays_in_the_child(tmp_path):
    path = _onnx(tmp_path / "bomb.onnx", input_shape=[1, 32, 32, 3], constant_of_shape=[60000, 60000])
    assert path.stat().st_size < 2048
    before = _rss_mb()
    isolate.clear_cache()
    with pytest.raises(RuntimeBackendError) as err:
        Classifier(path)
    assert err.value.path == str(path) and ("memory limit" in err.value.problem or "allocate" in err.value.problem)
    assert _rss_mb() - before < 500  # the 14 GB never reached this process


def test_every_file_is_probed_once_whatever_its_manifest_says(untrained_exports, tmp_path, monkeypatch):
    """Also measures the safe mode's cost (printed; the README quotes it). Issue 37: a matching
    manifest no longer skips the probe (it is as easy to forge); a probe's pass is what is remembered."""
    from edgetransfer.runtime import safe

    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    art = untrained_exports[("tflite", "int8")].path
    assert safe.ours(art)
    copy = tmp_path / "copied.tflite"
    shutil.copy(art, copy)
    assert not safe.ours(copy)
    shutil.copy(art.with_name(art.name + ".manifest.json"), tmp_path / "copied.tflite.manifest.json")
    assert safe.ours(copy)  # the manifest names the bytes, not the name
    (tmp_path / "copied.tflite.manifest.json").unlink()
    forged = tmp_path / "forged.tflite"
    forged.write_bytes(art.read_bytes() + b"\0")
    shutil.copy(art.with_name(art.name + ".manifest.json"), tmp_path / "forged.tflite.manifest.json")
    assert not safe.ours(forged)  # a manifest beside another file's bytes does not vouch for them

    children = []
    real_child = isolate._run_child
    monkeypatch.setattr(isolate, "_run_child", lambda *a: children.append(a[0]) or real_child(*a))
    timings = {}
    isolate.clear_cache()
    for name, path, mode in (("ours", art, None), ("a copy", copy, None), ("a copy, safe=False", copy, False)):
        t0 = time.perf_counter()
        Classifier(path, safe=mode).classify(IMAGE)
        timings[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    Classifier(copy).classify(IMAGE)  # the probe's result is cached per path and sha256
    timings["a copy, again"] = time.perf_counter() - t0
    print("\nClassifier load+classify (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    # ours: probed once; the copy (the same bytes) and safe=False: none; the second copy: the recorded pass
    assert children == [art]


def test_probe_is_skipped_inside_the_probe(monkeypatch, untrained_exports):
    calls = []
    monkeypatch.setattr(isolate, "probe", lambda *a, **k: calls.append(a))
    Classifier(untrained_exports[("onnx", "fp32")].path, safe=True)
    assert len(calls) == 1
    Classifier(untrained_exports[("onnx", "fp32")].path, safe=False)
    assert len(calls) == 1


@pytest.mark.slow  # a seeded search for a LiteRT-crashing mutant (about 1 in 40), then one Classifier
def test_a_litert_crashing_mutant_never_reaches_the_callers_process(tiny_exports, tmp_path):
    from test_sessions import find_crashing_mutant

    hit = find_crashing_mutant(tiny_exports[("tflite", "int8")].path.read_bytes(), tmp_path)
    if hit is None:
        pytest.skip("no 3-byte mutant crashed LiteRT in 300 tries on this build")
    path = hit[0]
    code = f"from edgetransfer.runtime import Classifier\nClassifier({str(path)!r})"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])  # an exception, not a signal
    assert "RuntimeBackendError" in res.stderr and str(path) in res.stderr and "crashed with SIG" in res.stderr


def test_tf_lite_without_an_interpreter_is_a_missing_dependency(monkeypatch):
    import importlib
    import types

    from edgetransfer.runtime import litert

    real = importlib.import_module

    def fake(name, *a, **k):
        if name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
            raise ImportError(f"No module named {name!r}")
        if name == "tensorflow.lite":
            return types.ModuleType("tensorflow.lite")  # TF 2.21: no Interpreter any more
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingDependencyError, match="tensorflow.lite: has no Interpreter"):
        litert.interpreter_module()


# -- the fuzz corpus through Classifier ---------------------------------------------------------------

# 3N .tflite + N .onnx: N=10 in the suite (about 1 s a mutant on the busy 2-core box, one child each);
# EDGETRANSFER_FUZZ_N=100 is the corpus of 300 + 100.
FUZZ_N = int(os.environ.get("EDGETRANSFER_FUZZ_N", "10"))


@pytest.mark.slow
def test_classifier_on_mutants_raises_naming_the_file_never_a_signal(tiny_exports, tmp_path):
    """Runs in a child Python (so a signal would show as a negative exit, not kill pytest) that
    calls ``Classifier`` on each mutant with the default safe mode. A mutant that passes the probe
    is loaded in-process, so the caller's peak stays under the probe's limit (the documented cap),
    never the many GB a crafted file can ask for."""
    from test_fuzz import mutate

    from edgetransfer.runtime import safe

    paths = []
    for fmt, n in (("tflite", 3 * FUZZ_N), ("onnx", FUZZ_N)):
        good, rng = tiny_exports[(fmt, "int8")].path.read_bytes(), random.Random(f"25{fmt}")
        for i in range(n):
            p = tmp_path / f"m{i:03d}.{fmt}"
            p.write_bytes(mutate(good, rng))
            paths.append(p)
    script = (
        "import sys, json\n"
        # VmHWM, not ru_maxrss: getrusage's maximum is kept across fork and execve, so it reported the
        # pytest worker's own peak (5 GB late in a suite); the new image's memory map starts afresh
        "def hwm():\n"
        "    s = open('/proc/self/status').read()\n"
        "    return int(s.split('VmHWM:')[1].split()[0]) // 1024\n"
        "import numpy as np\n"
        "from edgetransfer.runtime import Classifier\n"
        "from edgetransfer.errors import EdgeTransferError\n"
        "img = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        Classifier(p).classify(img, top=3); r = {'p': p, 'ok': True}\n"
        "    except EdgeTransferError as e:\n"
        "        r = {'p': p, 'path': e.path, 'code': e.exit_code, 'problem': e.problem[:200]}\n"
        "    r['rss'] = hwm()\n"
        "    print('R ' + json.dumps(r), flush=True)\n"
        "print('RSS_MB', hwm())\n"
    )
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True, env=ENV, timeout=3600
    )
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    import json

    rows = [json.loads(ln[2:]) for ln in res.stdout.splitlines() if ln.startswith("R ")]
    assert len(rows) == len(paths)
    for r in rows:
        assert r.get("ok") or (r["path"] == r["p"] and r["code"] in (EXIT_USAGE, EXIT_TOOLCHAIN)), r
    rss = int(next(ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("RSS_MB")))
    worst = max(rows, key=lambda r: r["rss"])
    print(f"\n{len(paths)} mutants in {time.perf_counter() - t0:.0f} s, caller peak RSS {rss} MB (reached at {worst})")
    assert rss < safe.PROBE_MEMORY_MB, worst
