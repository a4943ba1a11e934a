"""The torch-free .pth reader on real and hostile input."""

import io
import os
import pickle
import struct

import numpy as np
import pytest

from edgetransfer.backbones import efficientnet_lite as el
from edgetransfer.backbones import pth
from edgetransfer.errors import UnsafeFileError, WeightsError


@pytest.fixture(scope="module")
def real_pth():
    return el.pth_path("lite0")


def _header() -> bytes:
    return b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


def test_real_file_reads_as_state_dict(real_pth):
    sd = pth.read_state_dict(real_pth)
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_conv_stem.weight"].dtype == np.float32 and np.abs(sd["_conv_stem.weight"]).max() > 0.1


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_forbidden_global_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pth"
    bad.write_bytes(_header() + pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(
        UnsafeFileError, match="refused to load global 'posix.system'|refused to load global 'os.system'"
    ):
        pth.read_state_dict(bad)
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_forbidden_global_in_header_is_refused(tmp_path):
    bad = tmp_path / "evil-head.pth"
    bad.write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(UnsafeFileError):
        pth.read_state_dict(bad)


def test_truncated_file_is_refused(tmp_path, real_pth):
    raw = real_pth.read_bytes()
    for cut in (50, len(raw) // 2, len(raw) - 3):
        short = tmp_path / f"short{cut}.pth"
        short.write_bytes(raw[:cut])
        with pytest.raises(WeightsError, match="truncated|bytes present|ends before"):
            pth.read_state_dict(short)


def _storages_offset(path) -> int:
    fh = io.BytesIO(path.read_bytes())
    for _ in range(3):
        pth._safe_load(fh, path)
    pth._Unpickler(fh, path).load()
    pth._safe_load(fh, path)
    return fh.tell()


def test_storage_size_mismatch_is_refused(tmp_path, real_pth):
    raw = bytearray(real_pth.read_bytes())
    at = _storages_offset(real_pth)
    (numel,) = struct.unpack("<q", raw[at : at + 8])
    raw[at : at + 8] = struct.pack("<q", numel + 1)
    bad = tmp_path / "mismatch.pth"
    bad.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=f"header says {numel + 1} elements, the pickle declared {numel}"):
        pth.read_state_dict(bad)


def test_zip_format_is_explained(tmp_path):
    z = tmp_path / "new.pth"
    z.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(WeightsError, match="zip-format"):
        pth.read_state_dict(z)
