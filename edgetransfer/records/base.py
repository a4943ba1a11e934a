"""Records passed between stages and written beside their files, with a schema version.

Each record is a frozen dataclass with ``to_json`` / ``from_json``. ``from_json`` checks the
``kind`` and ``schema`` and refuses unknown or missing keys, so a renamed key fails loudly
instead of reading as ``None`` (the shape follows ai-edge-quantizer's ``qtyping.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import stat
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError
from ..io import label_problem

T = TypeVar("T")


def _bad(where: str, value: Any, wanted: str) -> ConfigError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ConfigError(
        f"{where}: {shown} is not {wanted}",
        fix="re-create the file with this version of edgetransfer (or correct the value named)",
    )


def _scalar(tp: type, value: Any, where: str) -> Any:
    """``value`` checked against a scalar annotation: JSON read from disk is untrusted (issue 37: a
    hand-edited ``validation.json`` with a string, boolean, NaN or infinite latency passed the gate)."""
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, value, "true or false")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, value, "a whole number")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _bad(where, value, "a finite number")
        return float(value)
    elif tp is str and not isinstance(value, str):
        raise _bad(where, value, "text")
    return value


def _decode(tp: Any, value: Any, where: str) -> Any:
    """``value`` (plain JSON) as the annotated type ``tp``: nested records, tuples, Optionals;
    scalars and containers are type-checked (a ``null`` only where the type allows ``None``)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _bad(where, value, "set")
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value, where) if len(inner) == 1 else value
    if value is None:
        if tp is Any:
            return None
        raise _bad(where, value, "set (null is not allowed here)")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return value if isinstance(value, tp) else _from_dict(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(
                f"{where}: {value!r} is not a {tp.__name__} (one of {', '.join(str(m.value) for m in tp)})",
                fix="re-create the file with this version of edgetransfer (or correct the value named)",
            ) from None
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _bad(where, value, "a mapping")
        args = typing.get_args(tp)
        return {k: _decode(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else value
    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(where, value, "a list")
        args = typing.get_args(tp)
        return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)) if args else tuple(value)
    if tp in (bool, int, float, str):
        return _scalar(tp, value, where)
    return value


# Value rules a record declares in ``BOUNDS`` (field -> rule), checked when it is read from JSON:
# a figure the gate compares must be one a measurement can produce.
_RULES: dict[str, tuple[Any, str]] = {
    "positive": (lambda v: v > 0, "a positive number"),
    "nonnegative": (lambda v: v >= 0, "zero or more"),
    "fraction": (lambda v: 0 <= v <= 1, "a fraction from 0 to 1"),
    "sha256": (lambda v: v == "" or re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a sha256 (64 hex digits)"),
    # one line of labels.txt: an old run's class "a\nb" exported a labels file longer than the outputs (issue 37)
    "label": (
        lambda v: label_problem(v) is None,
        "a class label (one line of labels.txt: no line break, control character or '/')",
    ),
}
_RULE_FIX = {
    "label": "rename that class in the run's manifest.json (and its data folder), or train/import the run again",
}


def _check_bounds(cls: type, values: dict, where: str) -> None:
    for name, rule in getattr(cls, "BOUNDS", {}).items():
        value = values.get(name)
        test, wanted = _RULES[rule]
        for i, v in enumerate(value if isinstance(value, tuple) else (value,)):
            if v is not None and not test(v):
                at = f"{where}.{name}" + (f"[{i}]" if isinstance(value, tuple) else "")
                err = _bad(at, v, wanted)
                err.fix = _RULE_FIX.get(rule, err.fix)
                raise err


def _from_dict(cls: type[T], raw: Any, where: str) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}",
            fix="re-create the file with this version of edgetransfer",
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    derived = set(getattr(cls, "DERIVED", ()))
    raw = {k: v for k, v in raw.items() if k not in derived}
    unknown = sorted(set(raw) - names - {"kind", "schema"})
    required = {
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(raw))
    if unknown or missing:
        raise ConfigError(
            f"{where}: {cls.__name__} has unknown keys {unknown} / missing keys {missing}",
            fix="re-create the file with this version of edgetransfer (or edit the keys named)",
        )
    values = {k: _decode(hints[k], v, f"{where}.{k}") for k, v in raw.items() if k in names}
    _check_bounds(cls, values, where)
    return cls(**values)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        kind = getattr(value, "KIND", "")
        head = {"kind": kind, "schema": value.SCHEMA} if kind else {}  # type: ignore[attr-defined]
        extra = value.derived() if hasattr(value, "derived") else {}
        return {**head, **body, **_encode(extra)}
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


class Record:
    """Mixin: ``to_json`` / ``from_json`` / ``read`` with a ``kind`` and ``schema`` check."""

    KIND: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1
    # Keys written for readers (computed from the fields by ``derived``) and skipped when read back.
    DERIVED: ClassVar[tuple[str, ...]] = ()

    def derived(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict:
        """Plain JSON: ``kind`` and ``schema`` first (for records that have a kind), then the fields."""
        out: dict = _encode(self)
        return out

    @classmethod
    def from_json(cls: type[T], doc: Any, where: str = "record") -> T:
        kind, schema = getattr(cls, "KIND", ""), getattr(cls, "SCHEMA", 1)
        if kind and isinstance(doc, dict):
            if doc.get("kind") != kind:
                raise ConfigError(
                    f"{where}: not an {kind} record (kind={doc.get('kind')!r})",
                    fix="pass the file edgetransfer wrote for this stage",
                )
            if doc.get("schema") != schema:
                raise ConfigError(
                    f"{where}: schema {doc.get('schema')!r}, this edgetransfer reads schema {schema}",
                    fix="re-create the file with this version of edgetransfer",
                )
        derived: tuple[str, ...] = getattr(cls, "DERIVED", ())
        if isinstance(doc, dict) and derived:
            doc = {k: v for k, v in doc.items() if k not in derived}
        return _from_dict(cls, doc, where)

    @classmethod
    def read(cls: type[T], path: str | Path) -> T:
        """Load from a JSON file; a file that is not JSON or lacks keys is a clear error."""
        path = Path(path)
        return cls.from_json(read_document(path, cls.__name__), str(path))  # type: ignore[attr-defined]


# Our largest JSON documents (a sweep's results with per-op profiles) are a few MB; a record file
# many times that is not one of ours (or /dev/zero), and json.loads would hold all of it in memory.
MAX_DOCUMENT_BYTES = 256 * 2**20


def read_document(path: Path, what: str) -> Any:
    """The JSON in ``path``, refused with a :class:`ConfigError` naming the file when it is not a
    regular file (a FIFO would block, a device never ends), too large, not UTF-8 JSON or nested
    deeper than the parser's recursion limit."""
    fix = "re-create it with edgetransfer (or restore it from a backup)"
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} ({exc.strerror or exc})", path=path, fix=fix) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"cannot read {what}: not a regular file (a folder, FIFO or device)", path=path, fix=fix)
    if info.st_size > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"cannot read {what}: {info.st_size / 2**20:.0f} MiB is not an edgetransfer record "
            f"(at most {MAX_DOCUMENT_BYTES >> 20} MiB)",
            path=path,
            fix=fix,
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"cannot read {what} ({reason})", path=path, fix=fix) from None
