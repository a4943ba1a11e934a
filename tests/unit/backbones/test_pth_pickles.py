"""The torch-free .pth reader on hostile pickles built opcode by opcode at test time.

Opcodes as in CPython's Lib/pickle.py; a tensor is what torch.save (legacy) writes:
``torch._utils._rebuild_tensor_v2(persistent_id(('storage', torch.FloatStorage, key, 'cpu', numel)),
offset, size, stride, requires_grad, OrderedDict())``.
"""

import pickle
import pickletools
import random
import struct
import tracemalloc

import numpy as np
import pytest

from edgetransfer.backbones import pth
from edgetransfer.errors import EXIT_USAGE, UnsafeFileError, WeightsError

HEADER = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


def _push(v) -> bytes:
    """Opcodes that push ``v`` (a protocol-2 pickle without PROTO and STOP)."""
    return pickle.dumps(v, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def storage(key: str, numel, dtype: str = "FloatStorage") -> bytes:
    return (
        pickle.MARK
        + _push("storage")
        + _global("torch", dtype)
        + _push(key)
        + _push("cpu")
        + _push(numel)
        + pickle.TUPLE
        + pickle.BINPERSID
    )


def tensor(st: bytes, offset, size, stride) -> bytes:
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + st
        + _push(offset)
        + _push(size)
        + _push(stride)
        + pickle.NEWFALSE
        + _global("collections", "OrderedDict")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.TUPLE
        + pickle.REDUCE
    )


def state_dict(entries: dict[str, bytes]) -> bytes:
    body = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.MARK
    for key, value in entries.items():
        body += _push(key) + value
    return body + pickle.SETITEMS


def pth_file(tmp_path, obj: bytes, storages: dict[str, np.ndarray], name="w.pth"):
    """A legacy .pth: header, the object's pickle, the key list, then each storage's bytes."""
    raw = HEADER + pickletools.optimize(pickle.PROTO + b"\x02" + obj + pickle.STOP)
    raw += pickle.dumps(list(storages), protocol=2)
    for arr in storages.values():
        raw += struct.pack("<q", arr.size) + arr.tobytes()
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def _refused(path, cls=WeightsError, match=None):
    with pytest.raises(cls, match=match) as err:
        pth.read_state_dict(path)
    assert err.value.path == str(path) and err.value.exit_code == EXIT_USAGE and err.value.fix
    return err.value


def test_hand_built_file_reads(tmp_path):
    data = np.arange(12, dtype=np.float32)
    path = pth_file(
        tmp_path,
        state_dict(
            {
                "w": tensor(storage("0", 12), 0, (3, 4), (4, 1)),
                "t": tensor(storage("0", 12), 0, (4, 3), (1, 4)),  # a transposed view of the same storage
                "s": tensor(storage("0", 12), 5, (), ()),
                "e": tensor(storage("0", 12), 12, (0, 4), (4, 1)),
            }
        ),
        {"0": data},
    )
    sd = pth.read_state_dict(path)
    assert np.array_equal(sd["w"], data.reshape(3, 4)) and np.array_equal(sd["t"], data.reshape(3, 4).T)
    assert sd["s"].shape == () and sd["s"] == 5 and sd["e"].shape == (0, 4)


def test_stride0_view_is_refused_before_allocating(tmp_path):
    path = pth_file(
        tmp_path, state_dict({"w": tensor(storage("0", 1), 0, (20000, 20000), (0, 0))}), {"0": np.ones(1, np.float32)}
    )
    assert path.stat().st_size < 400
    tracemalloc.start()
    try:
        _refused(path, match="repeats beyond its 1 elements")
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()


def test_huge_numel_is_refused_before_reading(tmp_path):
    path = pth_file(tmp_path, state_dict({"w": tensor(storage("0", 10**12), 0, (10**6, 10**6), (10**6, 1))}), {})
    _refused(path, match="declares 1000000000000 elements .* but the file has")
    neg = pth_file(tmp_path, state_dict({"w": tensor(storage("0", -5), 0, (1,), (1,))}), {}, name="neg.pth")
    _refused(neg, match="declares -5 elements")


def test_many_views_of_one_storage_are_capped(tmp_path):
    views = {f"w{i}": tensor(storage("0", 256), 0, (256,), (1,)) for i in range(50)}
    path = pth_file(tmp_path, state_dict(views), {"0": np.zeros(256, np.float32)})
    _refused(path, match="over 4x")


@pytest.mark.parametrize(
    "offset, size, stride, match",
    [
        (0, (4, 4), (4, 1), "reaches past"),
        (-1, (2,), (1,), "negative"),
        (0, (2,), (-1,), "negative"),
        (0, 5, (1,), "malformed"),
        (0, (2, 2), (1,), "malformed"),
        ("0", (2,), (1,), "malformed"),
        (0, (1,) * 40, (1,) * 40, "malformed"),
        (0, (True,), (1,), "malformed"),
    ],
)
def test_bad_views(tmp_path, offset, size, stride, match):
    path = pth_file(
        tmp_path, state_dict({"w": tensor(storage("0", 8), offset, size, stride)}), {"0": np.zeros(8, np.float32)}
    )
    _refused(path, match=match)


def test_rebuild_on_a_non_storage_is_unsafe(tmp_path):
    path = pth_file(tmp_path, state_dict({"w": tensor(_push(5), 0, (1,), (1,))}), {})
    _refused(path, UnsafeFileError, "not a storage")


def test_setitem_on_a_list_is_a_weights_error(tmp_path):
    obj = pickle.EMPTY_LIST + _push("w") + _push(1) + pickle.SETITEM
    _refused(pth_file(tmp_path, obj, {}), match="TypeError")


def test_build_cannot_rewrite_a_checked_storage(tmp_path):
    st = storage("0", 1) + pickle.EMPTY_DICT + _push("numel") + _push(10**9) + pickle.SETITEM + pickle.BUILD
    path = pth_file(tmp_path, state_dict({"w": tensor(st, 0, (1,), (1,))}), {"0": np.zeros(1, np.float32)})
    _refused(path, match="BUILD on a StorageRef record")


def test_calling_a_storage_type_and_odd_persistent_ids(tmp_path):
    called = _global("torch", "FloatStorage") + _push((1,)) + pickle.REDUCE
    _refused(pth_file(tmp_path, called, {}, name="a.pth"), match="not callable")
    odd = pickle.MARK + _push("storage") + _push(1) + pickle.TUPLE + pickle.BINPERSID
    _refused(pth_file(tmp_path, odd, {}, name="b.pth"), UnsafeFileError, "unexpected persistent id")


def test_deeply_nested_key_list_is_a_weights_error(tmp_path):
    path = pth_file(tmp_path, state_dict({}), {})
    deep = pickle.PROTO + b"\x02" + pickle.EMPTY_LIST * 200_000 + pickle.APPEND * 199_999 + pickle.STOP
    raw = path.read_bytes()
    keys_at = raw.rindex(pickle.dumps([], protocol=2))
    path.write_bytes(raw[:keys_at] + deep)
    _refused(path, match="storage key list")


def test_big_endian_is_refused(tmp_path):
    path = tmp_path / "be.pth"
    path.write_bytes(
        b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": False}))
    )
    _refused(path, match="big-endian")


def test_random_mutations_only_raise_our_errors(tmp_path):
    data = np.arange(24, dtype=np.float32)
    good = pth_file(
        tmp_path,
        state_dict(
            {"w": tensor(storage("0", 24), 0, (2, 3, 4), (12, 4, 1)), "b": tensor(storage("1", 4), 0, (4,), (1,))}
        ),
        {"0": data, "1": np.ones(4, np.float32)},
    ).read_bytes()
    rng = random.Random(13)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(400):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            op = rng.choice("fid")
            if op == "f":
                raw[at] = rng.randrange(256)
            elif op == "i":
                raw.insert(at, rng.randrange(256))
            else:
                del raw[at]
        path = tmp_path / "m.pth"
        path.write_bytes(bytes(raw))
        try:
            sd = pth.read_state_dict(path)
        except (WeightsError, UnsafeFileError) as exc:
            assert exc.path == str(path)
            outcomes["refused"] += 1
        else:
            assert all(isinstance(v, np.ndarray) and v.nbytes <= len(raw) * 4 for v in sd.values())
            outcomes["ok"] += 1
    assert outcomes["refused"] > 200, outcomes
