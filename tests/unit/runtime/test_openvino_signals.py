"""The death of a test worker (issue #35): after OpenVINO, a signal killed the process.

Each ``openvino.Core``'s CPU plugin installs its own alternate signal stack on the loading thread and
restores the previous one when freed; Cores freed out of creation order left the thread on an
unmapped stack, and the next signal handled by Python (SIGINT: Ctrl-C) ended the process with
SIGSEGV and no traceback. ``edgetransfer.runtime.openvino`` now keeps one Core per process. The
signal is raised in a child process, never in the pytest worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

pytest.importorskip("openvino")

_CHILD = textwrap.dedent(
    """
    import gc, signal, sys
    import onnx
    from onnx import TensorProto, helper
    from edgetransfer.runtime.openvino import OpenVINO

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
    first = OpenVINO().load(sys.argv[1], threads=1)
    second = OpenVINO().load(sys.argv[1], threads=2)
    del first  # freed in creation order, not the reverse: what a garbage collector does
    gc.collect()
    del second
    gc.collect()
    signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
    signal.raise_signal(signal.SIGINT)  # Ctrl-C
    """
)


def test_ctrl_c_after_two_openvino_sessions_exits_130_not_sigsegv(tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "relu.onnx")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    died = f"killed by {signal.Signals(-res.returncode).name}" if res.returncode < 0 else f"exit {res.returncode}"
    assert res.returncode == 130, f"{died}; stderr:\n{res.stderr[-2000:]}"
