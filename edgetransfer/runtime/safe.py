"""The :class:`~edgetransfer.runtime.Classifier`'s safe mode: every file is probed in a child first.

LiteRT and ONNX Runtime are native code. A 6-byte mutant of a good ``.tflite`` corrupts LiteRT's
heap ("double free or corruption", SIGABRT), and a 1 KB ONNX file whose ``ConstantOfShape``
builds a 60000x60000 tensor takes 14 GB: loaded in the app's own process, such a file kills the
app, and heap corruption from a file is a memory-safety exposure, not only a crash. So a file is
first loaded and run once in a child process (:func:`edgetransfer.runtime.isolate.probe`) under
an address-space limit and a timeout; only a file that passes is loaded in-process.

A ``<file>.manifest.json`` beside the file is no reason to skip this (issue 37): it is as easy to
forge as the file, sha256 included, so it proves nothing about where the bytes came from. What
is remembered instead is the probe's own result: a pass is recorded under the user's cache folder
(``probed/<sha256>``, with the limit and the edgetransfer version in the key), written only by
this code after a child loaded and ran those exact bytes, so a later process (an app's next
start) loads them without a child.

Cost: one child process per new file (about a second on a desktop CPU for a small model;
measured in ``tests/unit/runtime/test_native_crashes.py``; see docs/tasks/runtime.md, "Safe mode"), nothing
for a file probed before.
``Classifier(path, safe=False)`` skips it for files you trust.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RuntimeBackendError
from ..io import sha256_file
from .base import InputSpec

# Largest image side a graph may ask for, as for the metadata's input size (runtime._metadata_size):
# a mutated or crafted header may declare [1, 40000, 40000, 3], and Classifier would resize a photo
# to that size (4.8 GB as float32) before the runtime runs.
MAX_INPUT_SIDE = 8192
PROBE_TIMEOUT_S = 60.0
PROBE_MEMORY_MB = 4096  # the child's RLIMIT_AS: address space, so above the resident peak


def ours(path: str | Path) -> bool:
    """``path`` has an ``edgetransfer export`` manifest beside it that names its exact bytes.

    Informative only (the files of a run, a report): it is no reason to trust the bytes, since
    a forger writes the manifest too (:func:`guard` probes such files all the same).
    """
    path = Path(path)
    manifest = path.with_name(path.name + ".manifest.json")
    try:
        if manifest.stat().st_size > 1 << 22:
            return False
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        return (
            isinstance(doc, dict)
            and doc.get("kind") == "edgetransfer.artifact"
            and isinstance(doc.get("sha256"), str)
            and doc["sha256"] == sha256_file(path)
        )
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def _passed_marker(digest: str, memory_mb: int) -> Path:
    from .._version import __version__
    from .peak import cache_dir

    return cache_dir() / "probed" / f"{digest}-{int(memory_mb)}-{__version__}"


def guard(
    path: str | Path,
    safe: bool | None,
    *,
    timeout_s: float = PROBE_TIMEOUT_S,
    memory_mb: int = PROBE_MEMORY_MB,
) -> bool:
    """Probe ``path`` in a child process unless ``safe`` is ``False`` or these exact bytes passed a
    probe under the same limit before (recorded under the cache folder; ``safe=True`` ignores that).

    Returns whether it probed.

    Raises:
        RuntimeBackendError: the child crashed, hung or ran out of memory on the file (names it).
        EdgeTransferError: what loading it raised in the child (same class), e.g. damaged metadata.
    """
    if safe is False:
        return False
    from . import isolate

    try:
        digest = sha256_file(path)
    except OSError:
        digest = ""  # the probe names the unreadable file
    marker = _passed_marker(digest, memory_mb) if digest else None
    if safe is None and marker is not None and marker.is_file():
        return False
    isolate.probe(path, timeout_s=timeout_s, memory_mb=memory_mb)
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only cache only costs the next process a probe
            pass
    return True


def check_input_spec(spec: InputSpec, path: str | Path) -> InputSpec:
    """Refuse a graph whose input is larger than :data:`MAX_INPUT_SIDE` on any side (-1: dynamic).

    Raises:
        RuntimeBackendError: an input dimension other than the batch above the cap.
    """
    dims = [int(d) for d in spec.shape[1:]]
    if any(d > MAX_INPUT_SIDE for d in dims):
        raise RuntimeBackendError(
            f"the model's input shape {list(spec.shape)} is larger than {MAX_INPUT_SIDE} on a side: "
            "not a plausible image input",
            path=path,
            fix="re-export the model (the file is damaged or crafted)",
        )
    return spec
