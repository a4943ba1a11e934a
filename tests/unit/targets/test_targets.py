"""Target profiles: shipped ones load, bad ones are refused by name, estimates are calibrated."""

import json
from pathlib import Path

import pytest

from edgetransfer import targets
from edgetransfer.exporter.formats import graphops
from edgetransfer.runtime import latency

SHIPPED = {
    "host-cpu",
    "ci-runner",
    "rpi4",
    "pixel4-cpu",
    "pixel4-gpu",
    "edgetpu",
    "nnapi",
    "hexagon-qnn",
    "apple-ane",
    "jetson-orin",
}


def test_shipped_profiles_load_and_cite_sources(invoke):
    profs = targets.all_profiles()
    assert set(profs) >= SHIPPED
    for p in profs.values():
        assert p.sources, p.name
        if p.measure == "estimate":
            assert p.device and p.device.peak_gmacs, p.name
    code, out, _ = invoke("targets", "list", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} >= SHIPPED
    code, out, _ = invoke("targets", "show", "edgetpu")
    assert code == 0 and "first_segment" in out


def _profile(tmp_path, body: str) -> Path:
    d = tmp_path / "t"
    d.mkdir(exist_ok=True)
    (d / "mine.yaml").write_text(body)
    return d


BASE = "name: mine\ndescription: x\nruntime: litert\nformats: [tflite]\nprecisions: [fp32]\nmeasure: host\nsources: [me]\n"


def test_typo_key_names_file_and_key(invoke, tmp_path):
    d = _profile(tmp_path, BASE + "thraeds: 4\n")
    code, _, err = invoke("targets", "show", "mine", "--targets-dir", d)
    assert code == 2 and str(d / "mine.yaml") in err and "unknown key 'thraeds'" in err and "threads" in err


def test_typo_in_nested_section(invoke, tmp_path):
    d = _profile(
        tmp_path,
        BASE.replace("measure: host", "measure: estimate")
        + "device: {peak_gmacs: {fp32: 1}, memory_gbps: 1, per_op_ms: 3}\n",
    )
    code, _, err = invoke("targets", "list", "--targets-dir", d)
    assert code == 2 and "unknown key 'device.per_op_ms'" in err


def test_unknown_runtime(invoke, tmp_path):
    d = _profile(tmp_path, BASE.replace("runtime: litert", "runtime: tensorrt-lite"))
    code, _, err = invoke("targets", "show", "mine", "--targets-dir", d)
    assert code == 2 and "unknown runtime 'tensorrt-lite'" in err and "mine.yaml" in err


def test_unknown_target_suggests(invoke):
    code, _, err = invoke("targets", "show", "pixel4cpu")
    assert code == 2 and "did you mean 'pixel4-cpu'" in err


@pytest.fixture(scope="module")
def lite0_224(tmp_path_factory):
    """EfficientNet-Lite0's graph at 224 (weights do not change the cost model) in fp32/fp16/int8."""
    from export_matrix_lib import synthetic_run

    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.quantization import QuantRecipe

    run = synthetic_run("efficientnet_lite0", tmp_path_factory.mktemp("lite0"), size=224)
    arts = export(
        run,
        ["tflite"],
        [QuantRecipe.fp32(), QuantRecipe.fp16(), QuantRecipe.int8(calibration_size=4)],
        calibration=run.run_dir / "calibration",
    )
    return {a.precision: a.path for a in arts}


# tensorflow/tpu models/official/efficientnet/lite/README.md: Lite0 latency.
PUBLISHED = [
    ("pixel4-cpu", "fp32", 12.0),
    ("pixel4-cpu", "int8", 6.5),
    ("pixel4-gpu", "fp32", 9.0),
    ("pixel4-gpu", "fp16", 6.0),
    ("edgetpu", "int8", 3.8),
]


@pytest.mark.parametrize("target,precision,published_ms", PUBLISHED)
@pytest.mark.slow
def test_cost_model_within_30_percent_of_published(lite0_224, target, precision, published_ms):
    est = latency.estimate(graphops.ops_for(lite0_224[precision]), targets.get(target).device, precision)
    assert est.provenance == "estimated"
    assert abs(est.p50 - published_ms) / published_ms <= 0.30, f"{target} {precision}: {est.p50:.2f} ms"


@pytest.mark.slow
def test_edge_tpu_compatibility_rules(lite0_224):
    from edgetransfer.evaluation import compat

    tpu = targets.get("edgetpu")
    ok = compat.check(graphops.ops_for(lite0_224["int8"]), tpu.delegate, "int8")
    assert ok.full and ok.partitions == 1 and ok.macs_share == 1.0
    fp32 = compat.check(graphops.ops_for(lite0_224["fp32"]), tpu.delegate, "fp32")
    assert fp32.ops_delegated == 0 and "int8" in fp32.note
    # Without MEAN the compiler stops at the pooling: everything after it falls back.
    no_mean = tpu.delegate.__class__(
        **{**tpu.delegate.__dict__, "supported_ops": tuple(o for o in tpu.delegate.supported_ops if o != "MEAN")}
    )
    part = compat.check(graphops.ops_for(lite0_224["int8"]), no_mean, "int8")
    assert not part.full and part.partitions == 1 and "MEAN" in part.fallback_ops and part.macs_share > 0.95


@pytest.mark.slow
def test_gpu_delegate_segments_count_partitions(lite0_224):
    from edgetransfer.evaluation import compat

    gpu = targets.get("pixel4-gpu").delegate
    no_add = gpu.__class__(**{**gpu.__dict__, "supported_ops": tuple(o for o in gpu.supported_ops if o != "ADD")})
    c = compat.check(graphops.ops_for(lite0_224["fp32"]), no_add, "fp32")
    assert c.partitions > 5 and not c.full  # every residual ADD splits the graph
