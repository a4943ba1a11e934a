"""Backbones to every format x precision, each file run once.

Slow (about 20 to 60 s a backbone on 2 cores): marked, so `pytest -m "not slow"` skips it. The suite
runs one backbone per family builder (the width variants of a family share its code and converter
path); `EDGETRANSFER_FULL_MATRIX=1` runs all 20, as `benchmarks/export_matrix.py` does (about 20 min).
"""

import os
import tempfile
from pathlib import Path

import pytest
from export_matrix_lib import KNOWN_FAILURES, export_backbone

from edgetransfer import backbones


def test_known_failures_list_is_pinned():
    # Growing this list is a decision: add the pair here and in matrix.KNOWN_FAILURES with the reason.
    assert sorted(KNOWN_FAILURES) == sorted(PINNED)


PINNED = [
    (n, "tflite", "int16x8")
    for n in (
        "mobilenet_v1",
        "mobilenet_v2_035",
        "mobilenet_v2_050",
        "mobilenet_v2_075",
        "mobilenet_v2",
        "mobilenet_v2_130",
        "mobilenet_v2_140",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "efficientnet_lite3",
        "efficientnet_lite4",
    )
]


FAMILY_REPRESENTATIVES = (
    "mobilenet_v1",
    "mobilenet_v2_035",
    "mobilenet_v3_small",
    "nasnet_mobile",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "efficientnet_lite0",
)
FULL = bool(os.environ.get("EDGETRANSFER_FULL_MATRIX"))
MATRIX = backbones.names() if FULL else FAMILY_REPRESENTATIVES
# NASNet's ~1,000-op graph takes ~25 s a TFLite conversion on 2 cores: the suite converts it to float
# and full int8 (its graph's ops and the calibrated path); fp16 / dynamic / int16x8 in the full matrix.
SUITE_ONLY = {"nasnet_mobile": ("fp32", "int8")}


@pytest.mark.slow
@pytest.mark.parametrize("name", MATRIX)
def test_backbone_exports_everywhere(name):
    only = None if FULL else SUITE_ONLY.get(name)
    rows = export_backbone(name, Path(tempfile.mkdtemp(prefix=f"matrix-{name}-")), only=only)
    failed = [(r.format, r.precision, r.note) for r in rows if r.result == "failed"]
    assert not failed, failed
    known = {(name, r.format, r.precision) for r in rows if r.result == "known"}
    assert known == {k for k in KNOWN_FAILURES if k[0] == name}, "a known failure now works: remove it from the list"
