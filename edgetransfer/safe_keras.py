"""Loading a ``model.keras`` as data, never as code.

A ``.keras`` file is a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``.
Before Keras sees it, the archive and its config are checked here (size caps, no code-
carrying layers, only Keras' own modules), then Keras loads it with ``safe_mode=True``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from . import _lazy
from .errors import ConfigError, UnsafeFileError

# A Lite4 config.json is ~0.5 MB; 32 MB leaves room for any real model and refuses a
# 600 MB config planted to exhaust memory.
MAX_CONFIG_BYTES = 32 << 20
_CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}
_ALLOWED_MODULE_ROOTS = ("keras", "edgetransfer")
_FIX_BROKEN = "re-train, or restore model.keras from the run folder you exported it from"


def _walk(node: Any, path: Path) -> None:
    if isinstance(node, dict):
        cls, module = node.get("class_name"), node.get("module")
        if cls in _CODE_LAYERS:
            raise UnsafeFileError(
                f"model.keras contains a {cls} layer (code that would run on load)",
                path=path,
                fix="only load models edgetransfer trained; this file is refused",
            )
        if isinstance(module, str) and module and not module.startswith(_ALLOWED_MODULE_ROOTS):
            raise UnsafeFileError(
                f"model.keras names the module {module!r} (only Keras' own layers are loaded)",
                path=path,
                fix="only load models edgetransfer trained; this file is refused",
            )
        for v in node.values():
            _walk(v, path)
    elif isinstance(node, list):
        for v in node:
            _walk(v, path)


def inspect(path: str | Path) -> dict:
    """The parsed ``config.json`` of ``path`` after the archive and content checks."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("model file missing or not a file", path=path, fix=_FIX_BROKEN)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise ConfigError(
                    "not a complete .keras archive (config.json or model.weights.h5 missing)",
                    path=path,
                    fix=_FIX_BROKEN,
                )
            info = zf.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise UnsafeFileError(
                    f"config.json is {info.file_size:,} bytes (limit {MAX_CONFIG_BYTES:,})",
                    path=path,
                    fix="this is not a model edgetransfer wrote; it is refused",
                )
            config = json.loads(zf.read("config.json").decode("utf-8"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"model.keras is damaged ({type(exc).__name__}: {str(exc)[:200]})", path=path, fix=_FIX_BROKEN
        ) from None
    except RecursionError:
        raise UnsafeFileError("config.json is nested too deeply", path=path, fix=_FIX_BROKEN) from None
    try:
        _walk(config, path)
    except RecursionError:
        raise UnsafeFileError("config.json is nested too deeply", path=path, fix=_FIX_BROKEN) from None
    return config


def load_model(path: str | Path):  # -> keras.Model
    """Check ``path``, then load it with Keras ``safe_mode=True`` and no compile."""
    path = Path(path)
    inspect(path)
    keras = _lazy.keras()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError/KeyError for broken archives
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if "safe_mode" in text or "lambda" in text.lower():
            raise UnsafeFileError(
                f"Keras refused to load it safely ({text})",
                path=path,
                fix="only load models edgetransfer trained; this file is refused",
            ) from None
        raise ConfigError(
            f"Keras could not load the model ({type(exc).__name__}: {text})", path=path, fix=_FIX_BROKEN
        ) from None
