"""Records passed between stages and written beside their files, with a schema version.

Each record is a frozen dataclass with ``to_json`` / ``from_json``. ``from_json`` checks the
``kind`` and ``schema`` and refuses unknown or missing keys, so a renamed key fails loudly
instead of reading as ``None`` (the shape follows ai-edge-quantizer's ``qtyping.py``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError

T = TypeVar("T")


def _decode(tp: Any, value: Any, where: str) -> Any:
    """``value`` (plain JSON) as the annotated type ``tp``: nested records, tuples, Optionals."""
    origin = typing.get_origin(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], value, where) if len(inner) == 1 else value
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
    if origin is dict:
        args = typing.get_args(tp)
        if args and isinstance(value, dict):
            return {k: _decode(args[1], v, f"{where}.{k}") for k, v in value.items()}
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        return tuple(_decode(args[0], v, where) for v in value) if args else tuple(value)
    return value


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
    return cls(**{k: _decode(hints[k], v, f"{where}.{k}") for k, v in raw.items() if k in names})


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
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"cannot read {cls.__name__} ({type(exc).__name__}: {exc})",
                path=path,
                fix="re-create it with edgetransfer (or restore it from a backup)",
            ) from None
        return cls.from_json(doc, str(path))  # type: ignore[attr-defined]
