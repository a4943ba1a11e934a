"""Read legacy (pre-1.6) PyTorch ``.pth`` state dicts without torch and without running code.

The legacy format is five pickles then raw storages::

    magic number | protocol version | sys info | the object | storage keys
    for each key: int64 element count, then count * itemsize bytes

Unpickling is restricted to the few globals a state dict needs; any other global (say
``os.system``) is refused before anything runs. Every storage's declared size is checked
against its header and the bytes present, and every tensor view against its storage.
"""
from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnsafeFileError, WeightsError

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001
_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _StorageRef):
        raise UnsafeFileError("tensor built on something that is not a storage", fix="use a real state-dict file")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, path: Path):
        super().__init__(fh)
        self.path = path
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise UnsafeFileError(
            f"refused to load global '{module}.{name}': a weights file may only hold tensors",
            path=self.path, fix="this file tries to run code; do not use it",
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeFileError(f"unexpected persistent id {pid!r:.80}", path=self.path,
                                  fix="use a legacy PyTorch state-dict file")
        key, numel = str(pid[2]), int(pid[4])
        ref = self.storages.setdefault(key, _StorageRef(key, pid[1].dtype, numel))
        if ref.numel != numel or ref.dtype != pid[1].dtype:
            raise WeightsError(f"storage {key} declared twice with different sizes", path=self.path,
                               fix="the file is corrupt; reinstall the package that ships it")
        return ref


def read_state_dict(path: str | Path) -> "OrderedDict[str, np.ndarray]":
    """Read a legacy PyTorch state dict into NumPy arrays.

    Raises:
        UnsafeFileError: the pickle references a global other than a state dict's.
        WeightsError: the file is truncated, not legacy format, or a storage size disagrees.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:4] == b"PK\x03\x04":
        raise WeightsError("this is a zip-format .pth (torch >= 1.6); only the legacy format is read", path=path,
                           fix="re-save it with torch.save(sd, f, _use_new_zipfile_serialization=False)")
    fh = io.BytesIO(raw)
    bad = lambda what: WeightsError(what, path=path, fix="the file is truncated or corrupt; reinstall or re-download it")
    try:
        if _safe_load(fh, path) != _MAGIC:
            raise WeightsError("not a legacy PyTorch file (wrong magic number)", path=path,
                               fix="zip-format .pth files (torch >= 1.6) are not supported; re-save with "
                                   "torch.save(sd, f, _use_new_zipfile_serialization=False)")
        if _safe_load(fh, path) != _PROTOCOL:
            raise bad("unsupported protocol version")
        _safe_load(fh, path)  # sys info: endianness and type sizes, little-endian assumed below
        up = _Unpickler(fh, path)
        obj = up.load()
        keys = _safe_load(fh, path)
    except (EOFError, pickle.UnpicklingError, struct.error, IndexError, ValueError) as exc:
        raise bad(f"cannot read the pickle stream ({type(exc).__name__}: {exc})") from None
    buffers = _read_storages(fh, keys, up.storages, path, bad)
    if not isinstance(obj, dict):
        raise WeightsError(f"expected a state dict, found {type(obj).__name__}", path=path,
                           fix="save model.state_dict(), not the model")
    return OrderedDict((k, _view(v, buffers, path)) for k, v in obj.items() if isinstance(v, _TensorRef))


def _safe_load(fh, path):
    return _Unpickler(fh, path).load()


def _read_storages(fh, keys, declared, path, bad) -> dict[str, np.ndarray]:
    if not isinstance(keys, list) or set(map(str, keys)) != set(declared):
        raise bad("storage key list does not match the storages the tensors use")
    out = {}
    for key in map(str, keys):
        ref = declared[key]
        head = fh.read(8)
        if len(head) != 8:
            raise bad(f"storage {key}: file ends before its header")
        (numel,) = struct.unpack("<q", head)
        if numel != ref.numel:
            raise WeightsError(f"storage {key}: header says {numel} elements, the pickle declared {ref.numel}",
                               path=path, fix="the file is corrupt; do not use it")
        nbytes = numel * np.dtype(ref.dtype).itemsize
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise bad(f"storage {key}: {len(data)} of {nbytes} bytes present")
        out[key] = np.frombuffer(data, dtype=ref.dtype)
    return out


def _view(t: _TensorRef, buffers: dict[str, np.ndarray], path: Path) -> np.ndarray:
    buf = buffers[t.storage.key]
    if not t.size:
        return buf[t.offset:t.offset + 1].reshape(()).copy()
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if t.offset < 0 or min(t.stride) < 0 or last >= buf.size:
        raise WeightsError(f"a tensor view of storage {t.storage.key} reaches past its {buf.size} elements",
                           path=path, fix="the file is corrupt; do not use it")
    item = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf[t.offset:], shape=t.size, strides=[s * item for s in t.stride]).copy()
