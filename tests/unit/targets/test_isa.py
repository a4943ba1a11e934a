"""Issue #39 item 6: the instruction set is part of a CPU target; int8 ONNX for CPUs without VNNI does not
saturate there. The AVX2 behaviour is SIMULATED (this machine has VNNI): the simulator is tested here on
hand-made pairs and on real exported files."""

import dataclasses

import numpy as np
import pytest

from edgetransfer import isa, targets
from edgetransfer.errors import ConfigError
from edgetransfer.exporter.quantization.saturation import _pairs, simulate

AVX2 = ("avx2", "fma")
VNNI = ("avx2", "avx512_vnni")


def test_isa_names_and_the_saturation_rule(tmp_path):
    assert isa.u8s8_saturates(AVX2) and not isa.u8s8_saturates(VNNI) and not isa.u8s8_saturates(("neon", "dotprod"))
    assert isa.parse(["host"]) == isa.detect() and "avx2" in isa.parse(["avx2"])
    with pytest.raises(ConfigError, match="did you mean 'avx512_vnni'"):
        isa.parse(["avx512vnni"])
    src = (targets.SHIPPED / "host-cpu.yaml").read_text().replace("name: host-cpu", "name: old-cpu")
    (tmp_path / "old-cpu.yaml").write_text(src.replace("isa: [host]", "isa: [avx2, fma]"))
    assert targets.load_file(tmp_path / "old-cpu.yaml").isa == AVX2
    assert targets.get("host-cpu").isa == isa.detect()


def test_options_for_targets():
    avx2, vnni = [dataclasses.replace(targets.get("host-cpu"), name=n, isa=i) for n, i in (("a", AVX2), ("v", VNNI))]
    offered = ("bias_correction", "reduce_range", "u8u8")
    assert isa.for_targets(offered, "int8", (), [avx2]) == ("u8u8",)
    assert isa.for_targets(offered, "int8", ("reduce_range",), [avx2]) == ("reduce_range",)  # already safe
    assert isa.for_targets(offered, "int8", (), [vnni]) == ()
    assert isa.for_targets(offered, "fp32", (), [avx2]) == ()
    assert isa.for_targets(("bias_correction",), "int8", (), [avx2]) == ()  # a format without the options (TFLite)


def test_pair_arithmetic_is_avx2s():
    """vpmaddubsw: a[0]*w[0] + a[1]*w[1] into int16 with saturation."""
    a = np.array([[255, 255, 1, 1]], np.int32)
    assert _pairs(a, np.array([[127], [127], [1], [1]], np.int32))[1] == 1  # 64770 > 32767
    assert _pairs(a, np.array([[64], [64], [1], [1]], np.int32))[1] == 0  # 32640: 7-bit weights never saturate
    assert _pairs(a, np.array([[-128], [-128], [0], [0]], np.int32))[1] == 1  # -65280 < -32768
    assert _pairs(a[:, :3], np.array([[127], [127], [127]], np.int32))[:2] == (2, 1)  # odd K: padded with a zero


@pytest.fixture(scope="module")
def isa_exports(untrained_run, tmp_path_factory):
    """The untrained run's int8 ONNX made for a VNNI target and for an AVX2 one."""
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.quantization import QuantRecipe

    out = {}
    for name, cpu in (("vnni", VNNI), ("avx2", AVX2)):
        tgt = dataclasses.replace(targets.get("host-cpu"), name=f"{name}-cpu", isa=cpu)
        folder = tmp_path_factory.mktemp(name)
        (out[name],) = export(
            untrained_run, ["onnx"], [QuantRecipe.int8(calibration_size=12)], out=folder, targets=[tgt]
        )
    seven = dataclasses.replace(QuantRecipe.int8(calibration_size=12), options=("reduce_range",))
    (out["7bit"],) = export(untrained_run, ["onnx"], [seven], out=tmp_path_factory.mktemp("seven"))
    return out


def _batches(art, n=2):
    from edgetransfer.runtime import load_session
    from edgetransfer.runtime.base import to_nchw

    spec = load_session(art.path).input_spec
    rng = np.random.default_rng(0)
    return [to_nchw(rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32), spec) for _ in range(n)]


def test_export_for_an_avx2_target_uses_uint8_weights_and_says_so(isa_exports):
    vnni, avx2 = isa_exports["vnni"], isa_exports["avx2"]
    assert "u8u8" in avx2.manifest.recipe["options"] and avx2.manifest.recipe["quantized_for"].startswith("any")
    assert "u8u8" not in vnni.manifest.recipe["options"] and vnni.manifest.recipe["quantized_for"].startswith("vnni")


def test_simulator_on_real_files(isa_exports):
    s8 = simulate(isa_exports["vnni"].path, _batches(isa_exports["vnni"]))
    assert s8.pairs > 0 and all(x.worst <= 2 * 255 * 128 for x in s8.layers)
    seven = simulate(isa_exports["7bit"].path, _batches(isa_exports["7bit"]))
    assert seven.pairs > 0 and not seven.saturates and max(x.worst for x in seven.layers) <= 2 * 255 * 64
    u8 = simulate(isa_exports["avx2"].path, _batches(isa_exports["avx2"]))
    assert u8.pairs == 0 and not u8.saturates and len(u8.layers) == len(s8.layers)  # every layer U8U8
    assert "simulated" in u8.render()


def test_a_vnni_file_on_an_avx2_target_says_so(isa_exports):
    from edgetransfer.evaluation.delegation import isa_findings

    avx2 = dataclasses.replace(targets.get("host-cpu"), name="avx2-cpu", isa=AVX2)
    found = isa_findings(isa_exports["vnni"], avx2)
    assert found and "saturate" in found[0] and "--target avx2-cpu" in found[0]
    assert any("does not hold" in f for f in found) == (not isa.u8s8_saturates(isa.detect()))
    assert isa_findings(isa_exports["avx2"], avx2) == []
    vnni = dataclasses.replace(targets.get("host-cpu"), name="vnni-cpu", isa=VNNI)
    assert isa_findings(isa_exports["vnni"], vnni) == []
