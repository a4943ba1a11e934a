"""Issue 25: cache entries are verified before use; cache settings that cannot work are clear errors."""

from __future__ import annotations

import shutil

import numpy as np

from edgetransfer.training.features import FeatureCache, FeatureKey

KEY = FeatureKey("efficientnet_lite0", "imagenet", 32, "top", "crop")
SHA = "ab" * 32


def test_feature_cache_roundtrip_and_refuses_altered_entries(tmp_path):
    cache = FeatureCache(tmp_path, KEY)
    vec = np.arange(8, dtype=np.float32)
    cache.put(SHA, 0, vec)
    assert np.array_equal(cache.get(SHA, 0), vec)
    path = cache.path(SHA, 0)

    np.save(path.with_suffix(""), np.random.default_rng(0).normal(size=8).astype(np.float32))  # writes .npy
    assert cache.get(SHA, 0) is None  # noise planted as a plain .npy: recomputed, not trusted

    cache.put(SHA, 0, vec)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x40
    path.write_bytes(bytes(raw))
    assert cache.get(SHA, 0) is None  # one flipped byte in the vector

    cache.put(SHA, 0, vec)
    other = "cd" * 32
    cache.path(other, 0).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, cache.path(other, 0))
    assert cache.get(other, 0) is None  # an entry copied under another image's name
    assert cache.get(SHA, 1) is None  # and another view

    path.write_bytes(path.read_bytes()[:20])
    assert cache.get(SHA, 0) is None  # torn


def test_full_feature_cache_names_the_cache_not_out(tmp_path, monkeypatch):
    import errno

    import pytest

    from edgetransfer.errors import ToolchainError
    from edgetransfer.training import features

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(a[0]))

    cache = FeatureCache(tmp_path / "cache", KEY)
    monkeypatch.setattr(features, "open", full, raising=False)
    with pytest.raises(ToolchainError, match="feature cache") as err:
        cache.put(SHA, 0, np.zeros(4, np.float32))
    assert "EDGETRANSFER_CACHE" in err.value.fix and err.value.path == str(cache.dir)


def test_cache_env_naming_a_file_is_a_config_error(tmp_path, monkeypatch):
    import pytest

    from edgetransfer.backbones.weights import cache_dir
    from edgetransfer.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("x")
    for value in (afile, afile / "sub"):
        monkeypatch.setenv("EDGETRANSFER_CACHE", str(value))
        with pytest.raises(ConfigError, match="EDGETRANSFER_CACHE"):
            cache_dir()
    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "new"))
    assert cache_dir().is_dir()


def test_garbage_weights_sidecar_is_remade(tmp_path, monkeypatch):
    from edgetransfer.backbones import weights

    monkeypatch.setenv("EDGETRANSFER_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "src.pth"
    source.write_bytes(b"source")
    made = []

    def convert(tmp):
        made.append(tmp)
        tmp.write_bytes(b"converted")

    target = weights.cached_conversion(source, "t", convert)
    assert weights.cached_conversion(source, "t", convert) == target and len(made) == 1
    record = target.with_suffix(".json")
    for garbage in (b"\xff\xfe garbage", b"[1, 2]", b'{"sha256": 5}', b""):
        record.write_bytes(garbage)
        assert weights.cached_conversion(source, "t", convert) == target
        assert target.read_bytes() == b"converted"
    assert len(made) == 5


def test_weights_with_nan_blame_the_weights_file(tmp_path):
    import keras
    import pytest

    from edgetransfer.backbones.weights import load_into
    from edgetransfer.errors import WeightsError

    def build():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])

    src = build()
    kernel, bias = src.get_weights()
    kernel[1, 2] = np.nan
    src.set_weights([kernel, bias])
    path = tmp_path / "nan.weights.h5"
    src.save_weights(path)
    with pytest.raises(WeightsError, match="NaN or inf") as err:
        load_into(build(), path)
    assert err.value.path == str(path)
    src.set_weights([np.zeros_like(kernel), bias])
    src.save_weights(path)
    load_into(build(), path)
