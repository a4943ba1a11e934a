"""The files a device's accuracy run reads and writes: one ``.npz`` in, one ``.npz`` out.

The host sends the held-out images already as the file's input tensor (``x``: quantized for an
int8 input, NCHW for an NCHW file, in the input's dtype), so the device does no preprocessing
of its own that could differ from the host's; the device writes the file's output, dequantized,
one row per image (``y``, float32) and may name what it ran (``runtime``, a string). Needs only
NumPy (the ``runtime`` extra): it runs on a Raspberry Pi or a phone with Python.

Both files are untrusted on the other side: read with ``allow_pickle=False``, every key, dtype
and shape checked, errors naming the file and the key.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import InputSpec, quantize_input, to_nchw

INPUTS_KEY, OUTPUTS_KEY, RUNTIME_KEY = "x", "y", "runtime"
# A device's output file names its runtime in a short string; anything longer is not that.
MAX_RUNTIME_CHARS = 200


def to_tensor(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB [0, 255] NHWC float images -> the file's input tensor (layout, quantization, dtype)."""
    return np.ascontiguousarray(quantize_input(to_nchw(np.asarray(pixels, np.float32), spec), spec))


def to_pixels(tensor: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The inverse of :func:`to_tensor`, exact for what it produced: a session's ``run`` quantizes
    the result back to the very same integers (``round((q - zp) * s / s + zp) == q``)."""
    x = np.asarray(tensor)
    if np.issubdtype(x.dtype, np.integer):
        x = (x.astype(np.float64) - (spec.zero_point or 0)) * (spec.scale or 1.0)
    x = x.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if spec.layout == "NCHW" else x


def _bad(path: Path, problem: str, fix: str) -> DataError:
    return DataError(problem, path=path, fix=fix)


def read_array(path: str | Path, key: str, *, what: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``key`` of the ``.npz`` at ``path`` (and every array in it), refusing pickles and non-numeric data.

    Raises:
        DataError: not an ``.npz``, ``key`` missing, an object array, or no rows.
    """
    path = Path(path)
    fix = f"the {what} must be an .npz (numpy.savez) with key '{key}'"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise _bad(path, f"the {what} was not written", fix) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(path, f"the {what} is not a readable .npz ({type(exc).__name__}: {str(exc)[:160]})", fix) from None
    if key not in arrays:
        raise _bad(path, f"the {what} has no key '{key}' (keys: {', '.join(sorted(arrays)) or 'none'})", fix)
    arr = arrays[key]
    if arr.dtype.kind not in "biuf" or arr.ndim < 1 or len(arr) == 0:
        raise _bad(path, f"key '{key}' of the {what} is {arr.dtype} {arr.shape}, not numeric rows", fix)
    return arr, arrays


def read_outputs(path: str | Path, images: int) -> tuple[np.ndarray, str]:
    """``(y, runtime)`` of a device's output file: ``images`` finite rows of scores, and what it says it ran."""
    path = Path(path)
    y, arrays = read_array(path, OUTPUTS_KEY, what="device's output file")
    fix = f"the device must write one row of scores per input image (key '{OUTPUTS_KEY}', shape [{images}, classes])"
    if y.ndim != 2 or len(y) != images:
        raise _bad(path, f"key '{OUTPUTS_KEY}' has shape {y.shape}, expected [{images}, classes]", fix)
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise _bad(path, f"key '{OUTPUTS_KEY}' holds NaN or inf", "check the model runs on the device")
    runtime = arrays.get(RUNTIME_KEY)
    text = ""
    if runtime is not None:
        if runtime.dtype.kind != "U" or runtime.size != 1:
            raise _bad(path, f"key '{RUNTIME_KEY}' is {runtime.dtype} {runtime.shape}, not one string", fix)
        text = str(runtime.reshape(()))[:MAX_RUNTIME_CHARS]
    return y, text


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` as an ``.npz`` atomically (a reader never sees half a file); respects the umask."""
    path = Path(path)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle among the kwargs
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def predict(model: str | Path, inputs: str | Path, outputs: str | Path, threads: int | None, provider: str) -> dict:
    """The device side: run ``model`` on every row of ``inputs`` (key ``x``), write ``outputs`` (key ``y``).

    Returns:
        ``{"images": N, "runtime": "..."}`` for the caller to print.

    Raises:
        DataError: the inputs are not the file's input tensor (dtype or shape).
        RuntimeBackendError: the runtime failed.
    """
    from . import isolate, runtime_for

    isolate.probe(model)  # a crashing file must give exit 3 naming it, not kill this process
    rt = runtime_for(model, provider)
    session = rt.load(model, threads)
    spec = session.input_spec
    x, _ = read_array(inputs, INPUTS_KEY, what="inputs file")
    want = tuple(d for d in spec.shape[1:])
    if x.dtype.name != spec.dtype or (all(d > 0 for d in want) and tuple(x.shape[1:]) != want):
        raise _bad(
            Path(inputs),
            f"key '{INPUTS_KEY}' is {x.dtype.name} {tuple(x.shape)}, the model takes {spec.dtype} [N, "
            f"{', '.join(map(str, want))}]",
            "send the held-out images as the model's input tensor (edgetransfer's runners do)",
        )
    pixels = to_pixels(x, spec)
    y = np.concatenate([session.run(pixels[i : i + 1]) for i in range(len(pixels))]).astype(np.float32)
    name = f"{rt.version()}, {spec.dtype} input"
    write_npz(outputs, **{OUTPUTS_KEY: y, RUNTIME_KEY: np.array(name)})
    return {"images": int(len(y)), "runtime": name}
