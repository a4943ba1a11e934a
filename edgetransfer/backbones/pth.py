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
import math
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
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _NoBuild:
    """A pickle BUILD opcode must not rewrite a checked record: with no ``__dict__`` (slots) it
    would call ``__setstate__``, which frozen slotted dataclasses define (Lib/dataclasses.py,
    ``_dataclass_setstate``) unless the class does; so define one that refuses."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"BUILD on a {type(self).__name__.strip('_')} record")


@dataclass(frozen=True, slots=True)
class _StorageType(_NoBuild):
    dtype: type
    __setstate__ = _NoBuild.__setstate__


@dataclass(frozen=True, slots=True)
class _StorageRef(_NoBuild):
    key: str
    dtype: type
    numel: int
    __setstate__ = _NoBuild.__setstate__


@dataclass(frozen=True, slots=True)
class _TensorRef(_NoBuild):
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple
    __setstate__ = _NoBuild.__setstate__


_MAX_DIMS = 32  # NumPy allows 64; no weight tensor has more than a handful
# A state dict may view one storage more than once (tied weights); the arrays built from the
# views may total at most this many times the storage bytes present, and never more than
# the bytes present for a single tensor.
_MAX_VIEW_FACTOR = 4
_FIX_CORRUPT = "the file is corrupt or crafted; do not use it"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Unpickler(pickle.Unpickler):
    """Only a state dict's globals; every record it builds is checked against the file's size."""

    def __init__(self, fh, path: Path, file_size: int | None = None):
        super().__init__(fh)
        self.path = path
        self.file_size = file_size
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise UnsafeFileError(
            f"refused to load global '{module}.{name}': a weights file may only hold tensors",
            path=self.path,
            fix="this file tries to run code; do not use it",
        )

    def _rebuild_tensor(self, storage=None, storage_offset=None, size=None, stride=None, *_ignored):
        """torch._utils._rebuild_tensor_v2's arguments, checked; the view itself is checked in _view."""
        if not isinstance(storage, _StorageRef) or storage is not self.storages.get(storage.key):
            raise UnsafeFileError(
                "tensor built on something that is not a storage", path=self.path, fix="use a real state-dict file"
            )
        if not (
            _is_int(storage_offset)
            and isinstance(size, tuple)
            and isinstance(stride, tuple)
            and len(size) == len(stride) <= _MAX_DIMS
            and all(map(_is_int, size + stride))
        ):
            raise WeightsError(
                f"tensor on storage {storage.key} has a malformed offset/size/stride "
                f"({storage_offset!r:.40}, {size!r:.80}, {stride!r:.80})",
                path=self.path,
                fix=_FIX_CORRUPT,
            )
        return _TensorRef(storage, storage_offset, size, stride)

    def persistent_load(self, pid):
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _is_int(pid[4])
        ):
            raise UnsafeFileError(
                f"unexpected persistent id {pid!r:.80}", path=self.path, fix="use a legacy PyTorch state-dict file"
            )
        key, numel, dtype = pid[2], pid[4], pid[1].dtype
        nbytes = numel * np.dtype(dtype).itemsize
        if numel < 0 or (self.file_size is not None and nbytes > self.file_size):
            raise WeightsError(
                f"storage {key} declares {numel} elements ({nbytes} bytes) but the file has {self.file_size} bytes",
                path=self.path,
                fix=_FIX_CORRUPT,
            )
        ref = self.storages.setdefault(key, _StorageRef(key, dtype, numel))
        if ref.numel != numel or ref.dtype != dtype:
            raise WeightsError(
                f"storage {key} declared twice with different sizes",
                path=self.path,
                fix="the file is corrupt; reinstall the package that ships it",
            )
        return ref


def read_state_dict(path: str | Path) -> OrderedDict[str, np.ndarray]:
    """Read a legacy PyTorch state dict into NumPy arrays.

    Raises:
        UnsafeFileError: the pickle references a global other than a state dict's, or builds a
            tensor on something that is not a storage.
        WeightsError: the file is truncated, not legacy format, a storage size disagrees, a tensor
            view reaches outside its storage or would expand it, or the pickle stream is malformed
            in any other way (any exception while unpickling becomes this error).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:4] == b"PK\x03\x04":
        raise WeightsError(
            "this is a zip-format .pth (torch >= 1.6); only the legacy format is read",
            path=path,
            fix="re-save it with torch.save(sd, f, _use_new_zipfile_serialization=False)",
        )
    fh = io.BytesIO(raw)
    bad = lambda what: WeightsError(
        what, path=path, fix="the file is truncated or corrupt; reinstall or re-download it"
    )
    try:
        if _safe_load(fh, path) != _MAGIC:
            raise WeightsError(
                "not a legacy PyTorch file (wrong magic number)",
                path=path,
                fix="zip-format .pth files (torch >= 1.6) are not supported; re-save with "
                "torch.save(sd, f, _use_new_zipfile_serialization=False)",
            )
        if _safe_load(fh, path) != _PROTOCOL:
            raise bad("unsupported protocol version")
        info = _safe_load(fh, path)  # sys info: endianness and type sizes
        if isinstance(info, dict) and info.get("little_endian") is False:
            raise WeightsError(
                "big-endian .pth files are not supported", path=path, fix="re-save it on a little-endian machine"
            )
        up = _Unpickler(fh, path, len(raw))
        obj = up.load()
        keys = _safe_load(fh, path)
    except (UnsafeFileError, WeightsError):
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed stream raises anything from TypeError
        # (SETITEM on a list) to MemoryError or RecursionError; all of them mean "corrupt file".
        raise bad(f"cannot read the pickle stream ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(obj, dict):
        raise WeightsError(
            f"expected a state dict, found {type(obj).__name__}",
            path=path,
            fix="save model.state_dict(), not the model",
        )
    tensors = [(k, v) for k, v in obj.items() if isinstance(v, _TensorRef)]
    if not all(isinstance(k, str) for k, _ in tensors):
        raise WeightsError("a state-dict key is not a string", path=path, fix=_FIX_CORRUPT)
    _check_views([v for _, v in tensors], up.storages, path)
    buffers = _read_storages(fh, keys, up.storages, path, bad)
    return OrderedDict((k, _view(v, buffers, path)) for k, v in tensors)


def _safe_load(fh, path):
    return _Unpickler(fh, path).load()


def _read_storages(fh, keys, declared, path, bad) -> dict[str, np.ndarray]:
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)) or set(keys) != set(declared):
        raise bad("storage key list does not match the storages the tensors use")
    out = {}
    for key in map(str, keys):
        ref = declared[key]
        head = fh.read(8)
        if len(head) != 8:
            raise bad(f"storage {key}: file ends before its header")
        (numel,) = struct.unpack("<q", head)
        if numel != ref.numel:
            raise WeightsError(
                f"storage {key}: header says {numel} elements, the pickle declared {ref.numel}",
                path=path,
                fix="the file is corrupt; do not use it",
            )
        nbytes = numel * np.dtype(ref.dtype).itemsize
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise bad(f"storage {key}: {len(data)} of {nbytes} bytes present")
        out[key] = np.frombuffer(data, dtype=ref.dtype)
    return out


def _check_views(tensors: list[_TensorRef], storages: dict[str, _StorageRef], path: Path) -> None:
    """Every view inside its storage, and the arrays to build bounded, before anything is allocated.

    A stride-0 view of a one-element storage with a huge shape passes a bounds check yet asks
    ``.copy()`` for gigabytes; hence the size caps (see ``_MAX_VIEW_FACTOR``).
    """
    storage_bytes = sum(r.numel * np.dtype(r.dtype).itemsize for r in storages.values())
    total = 0
    for t in tensors:
        ref = storages.get(t.storage.key)
        if ref is not t.storage:
            raise UnsafeFileError(
                "tensor built on something that is not a storage", path=path, fix="use a real state-dict file"
            )
        numel = math.prod(t.size)
        if t.offset < 0 or min(t.size + t.stride, default=0) < 0:
            raise WeightsError(
                f"a tensor view of storage {ref.key} has a negative offset, size or stride",
                path=path,
                fix=_FIX_CORRUPT,
            )
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride)) if numel else t.offset - 1
        if last >= ref.numel or numel > ref.numel:
            raise WeightsError(
                f"a tensor view of storage {ref.key} (offset {t.offset}, size {t.size}, stride "
                f"{t.stride}) reaches past or repeats beyond its {ref.numel} elements",
                path=path,
                fix=_FIX_CORRUPT,
            )
        total += numel * np.dtype(ref.dtype).itemsize
    if total > _MAX_VIEW_FACTOR * storage_bytes:
        raise WeightsError(
            f"the tensors would take {total} bytes from {storage_bytes} bytes of storage (over {_MAX_VIEW_FACTOR}x)",
            path=path,
            fix=_FIX_CORRUPT,
        )


def _view(t: _TensorRef, buffers: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """The tensor as its own array; ``_check_views`` has bounded it already."""
    buf = buffers[t.storage.key]
    if not math.prod(t.size):
        return np.zeros(t.size, dtype=buf.dtype)
    item = buf.itemsize
    return np.lib.stride_tricks.as_strided(buf[t.offset :], shape=t.size, strides=[s * item for s in t.stride]).copy()
