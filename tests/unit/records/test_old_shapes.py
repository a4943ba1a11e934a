"""Issue #35 item 3: fields that were plain dicts are records now (``Measurement.compatibility``,
``.memory``, ``ValidationReport.held_out``). A ``validation.json`` written before keeps loading into the
records, and writing it again gives the same document, key for key and in the same order.

The old documents are spelled out here as the code before the change wrote them: ``compatibility`` was
``Compatibility.to_json()`` (the dataclass's fields, ``fallback_ops`` sorted once each, ``ops_share``
rounded to 4 places after them), ``memory`` the dict of ``runtime.tflm.fits``, ``held_out``
``HeldOut.to_json()``; an artifact manifest's ``calibration`` was ``{"source", "count"}``.
"""

from __future__ import annotations

import json

import pytest

from edgetransfer import gate
from edgetransfer.errors import ConfigError
from edgetransfer.evaluation import compat
from edgetransfer.records import (
    ArtifactManifest,
    Budget,
    CalibrationUsed,
    Compatibility,
    HeldOutInfo,
    IOSpec,
    MemoryFit,
    ValidationReport,
)
from edgetransfer.records.latency import Latency
from edgetransfer.records.measure import Best, Measurement, Reference
from edgetransfer.records.vocab import Provenance, Status

OLD_COMPAT = {
    "delegate": "edgetpu",
    "ops_total": 7,
    "ops_delegated": 5,
    "macs_share": 0.9312,
    "partitions": 2,
    "fallback_ops": ["MEAN", "SOFTMAX"],
    "full": False,
    "note": "answered by the profile's op list",
    "ops_share": 0.7143,
}
OLD_MEMORY = {
    "target": "stm32h7",
    "arena_bytes": 614400,
    "flash_bytes": 3993600,
    "arena_in": None,
    "ram_budget_bytes": 524288,
    "flash_budget_bytes": 2097152,
    "ram_ok": False,
    "flash_ok": False,
    "fits": False,
}
OLD_HELD_OUT = {"source": "/data/flowers", "split": "seeded 20% split (seed 0), as in training", "images": 20}


def _old_report() -> dict:
    """A whole ``validation.json`` in the old shape: the current writer's document with the three fields
    replaced by the dicts the old writer put there."""
    lat = Latency(3.0, 4.0, 4.5, 3.2, 0.1, 50, "estimated", detail={"runtime": "tflm"})
    m = Measurement(
        artifact="/x/model_int8.tflite",
        format="tflite",
        precision="int8",
        target="stm32h7",
        size_bytes=3993600,
        latency=lat,
        accuracy=0.9,
        accuracy_drop=1.5,
    )
    rep = ValidationReport(
        held_out=HeldOutInfo("d", "val", 1),
        reference=Reference(0.915, "model.keras", None),
        records=(m,),
        best={"stm32h7": Best("/x/model_int8.tflite", 3.0, "estimated", 0.9, "tflm")},
        classes=("a", "b"),
    )
    doc = rep.to_json()
    doc["held_out"] = dict(OLD_HELD_OUT)
    doc["data"] = OLD_HELD_OUT["source"]  # derived from held_out
    doc["records"][0]["compatibility"] = dict(OLD_COMPAT)
    doc["records"][0]["memory"] = dict(OLD_MEMORY)
    return doc


def test_an_old_report_loads_into_the_records_and_is_written_back_the_same():
    doc = _old_report()
    rep = ValidationReport.from_json(json.loads(json.dumps(doc)), "validation.json")
    m = rep.records[0]
    assert rep.held_out == HeldOutInfo("/data/flowers", "seeded 20% split (seed 0), as in training", 20)
    assert rep.data == "/data/flowers"
    assert isinstance(m.compatibility, Compatibility) and m.compatibility.fallback_ops == ("MEAN", "SOFTMAX")
    assert isinstance(m.memory, MemoryFit) and m.memory.arena_in is None and not m.fits
    assert m.latency is not None and m.latency.provenance is Provenance.ESTIMATED  # an enum field, read from text
    assert json.dumps(rep.to_json()) == json.dumps(doc)  # same keys, same order, same values


def test_the_gate_reads_the_old_fields_as_before():
    rep = ValidationReport.from_json(_old_report(), "validation.json")
    v = gate.judge(rep.records[0], Budget(ram_kb=1024, flash_kb=1024, full_delegation=True))
    checks = {c.name: c for c in v.checks}
    assert checks["ram"].status == Status.PASSED and "(arena in no memory of the part)" in checks["ram"].message
    assert checks["flash"].status == Status.FAILED and "3,993,600 bytes" in checks["flash"].message
    d = checks["full_delegation"]
    assert d.status == Status.FAILED and d.figure == pytest.approx(5 / 7, abs=1e-4)
    assert "edgetpu is predicted to take 5/7 ops in 2 partition(s)" in d.message and "MEAN, SOFTMAX" in d.message


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("held_out", {"source": "d", "split": "val"}),  # a key missing
        ("memory", {**OLD_MEMORY, "fits": "no"}),  # a figure of the wrong type
        ("compatibility", {**OLD_COMPAT, "delegated": 5}),  # a renamed key
    ],
)
def test_a_damaged_old_field_is_refused_naming_it(field, bad):
    doc = _old_report()
    where = doc if field == "held_out" else doc["records"][0]
    where[field] = bad
    with pytest.raises(ConfigError, match=field):
        ValidationReport.from_json(doc, "validation.json")


def test_the_analyzer_keeps_graph_order_and_the_measurement_stores_each_op_once_sorted():
    c = Compatibility("gpu", 4, 2, 0.5, 2, ("SOFTMAX", "MEAN", "SOFTMAX"), False)
    assert c.stored().fallback_ops == ("MEAN", "SOFTMAX") and c.fallback_ops[0] == "SOFTMAX"
    assert c.to_json()["fallback_ops"] == ["MEAN", "SOFTMAX"] and c.to_json()["ops_share"] == 0.5
    assert compat.Compatibility is Compatibility  # the evaluation's name is the record


def _old_manifest(calibration: dict | None) -> dict:
    io = IOSpec(32, dtype="int8", range=(0.0, 255.0))  # as read back (the default is written as ints)
    m = ArtifactManifest("model_int8.tflite", "tflite", "int8", io, {}, "0" * 64, 1234, "..")
    return {**m.to_json(), "calibration": calibration}


@pytest.mark.parametrize("calibration", [{"source": "12 class-balanced images of the run's data", "count": 12}, None])
def test_an_old_artifact_manifest_loads_its_calibration_as_a_record(calibration):
    doc = _old_manifest(calibration)
    m = ArtifactManifest.from_json(json.loads(json.dumps(doc)), "model_int8.tflite.manifest.json")
    want = CalibrationUsed("12 class-balanced images of the run's data", 12) if calibration else None
    assert m.calibration == want
    assert json.dumps(m.to_json()) == json.dumps(doc)


def test_an_old_calibration_with_a_count_in_words_is_refused():
    with pytest.raises(ConfigError, match="calibration.count"):
        ArtifactManifest.from_json(_old_manifest({"source": "x", "count": "twelve"}), "m.manifest.json")
