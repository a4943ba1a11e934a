"""YAML for target profiles and pipeline files: ``yaml.safe_load`` semantics, with limits.

On top of ``yaml.safe_load`` this module refuses, with a :class:`ConfigError` naming the file:

* duplicate keys in one mapping (YAML 1.2 section 3.2.1.1 says keys are unique; PyYAML keeps
  the last one silently, so a second ``accuracy_drop: 50.0`` loosened a budget);
* input over :data:`MAX_BYTES`, text that is not UTF-8, nesting deeper than :data:`MAX_DEPTH`
  (PyYAML's composer recurses once per level and hits ``RecursionError``);
* alias bombs ("billion laughs", CVE-2003-1564 style): the node graph is small but expands to
  exponentially many nodes for any code that walks the result. The expanded node count is
  computed on the composed graph (memoised, so linear in its size) and capped at
  :data:`MAX_EXPANDED_NODES`; ordinary anchors and ``<<`` merge keys still work.

It also holds small typed-field checks (:func:`want_number`, :func:`want_int`, :func:`want_str`,
:func:`want_str_list`) whose errors read ``FILE: key 'x' must be ...`` with the fix.
"""

from __future__ import annotations

import difflib
import math
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from .errors import ConfigError

MAX_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_EXPANDED_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _LimitError(Exception):
    """Raised inside the loader; turned into a ConfigError with the file's path."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with a depth limit while composing and a duplicate-key check."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # PyYAML hook (yaml/composer.py)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(
                    f"nesting deeper than {MAX_DEPTH} levels (line {mark.line + 1})",
                    "flatten the file; profiles and pipelines need a few levels at most",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # PyYAML hook (yaml/constructor.py)
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue  # '<<' keys are merged by flatten_mapping; later own keys override them
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _LimitError(
                            f"duplicate key '{key}' on line {line} (first on line {seen[key]})",
                            "keep one of them; YAML keys must be unique and the last one would silently win",
                        )
                    seen[key] = line
                except TypeError:
                    continue  # unhashable key: SafeConstructor reports it
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_yaml_map)  # type: ignore[type-var]


def _expanded_size(root: Node) -> int:
    """Nodes a full walk of ``root`` visits, counting each alias as a copy (iterative, memoised)."""
    memo: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being counted: the current path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in memo or (not done and id(node) in open_):
            continue  # counted already, or a recursive alias back to an ancestor
        if isinstance(node, ScalarNode):
            memo[id(node)] = 1
            continue
        kids = [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else list(node.value)
        if done:
            open_.discard(id(node))
            memo[id(node)] = 1 + sum(memo.get(id(k), 0) for k in kids)  # a recursive alias counts 0
            if memo[id(node)] > MAX_EXPANDED_NODES:
                raise _LimitError(
                    f"aliases expand to over {MAX_EXPANDED_NODES} nodes (an alias bomb)",
                    "write the values out instead of nesting aliases of aliases",
                )
            continue
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in memo)
    return memo[id(root)]


def load_text(text: str | bytes, *, path: str | Path) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, strictly.

    Args:
        text: the document, as text or as UTF-8 bytes.
        path: the file it came from, named in every error.

    Returns:
        The Python value (``None`` for an empty document).

    Raises:
        ConfigError: invalid YAML or UTF-8, a duplicate key, or a size, depth or alias limit exceeded.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise _too_big(len(text), path)
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"not UTF-8 text (byte {exc.start}: {exc.reason})", path=path, fix="save the file as UTF-8"
            ) from None
    if len(text) > MAX_BYTES:
        raise _too_big(len(text), path)
    loader = _StrictLoader(text)
    loader.name = str(path)  # marks in PyYAML's messages name the file, not "<unicode string>"
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _LimitError as exc:
        raise ConfigError(exc.problem, path=path, fix=exc.fix) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({_one_line(exc)})", path=path, fix="fix the syntax at that line") from None
    except RecursionError:
        raise ConfigError("the YAML nests too deeply to read", path=path, fix="flatten the file") from None
    finally:
        loader.dispose()


def load_file(path: str | Path) -> Any:
    """Read and parse ``path`` with :func:`load_text`; the size is checked before reading.

    Raises:
        ConfigError: the file cannot be read, or :func:`load_text` refuses it.
    """
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block the read forever
            raise ConfigError(
                "not a regular file (a FIFO, socket or device)", path=path, fix="pass the YAML file itself"
            )
        size = st.st_size
        if size > MAX_BYTES:
            raise _too_big(size, path)
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # a file that grows after stat() is still bounded
    except OSError as exc:
        raise ConfigError(
            f"cannot read ({exc.strerror or exc})", path=path, fix="check the path and permissions"
        ) from None
    return load_text(raw, path=path)


def _too_big(n: int, path) -> ConfigError:
    return ConfigError(
        f"{n} bytes is over the {MAX_BYTES}-byte limit for a YAML config",
        path=path,
        fix="a target profile or pipeline is a few KB; check this is the right file",
    )


def _one_line(exc: yaml.YAMLError) -> str:
    return " ".join(str(exc).split())[:300]


# ---------------------------------------------------------------- typed fields


def _bad(key: str, path, what: str, value: Any, fix: str) -> ConfigError:
    shown = "null" if value is None else repr(value) if isinstance(value, str) else str(value)
    return ConfigError(f"key '{key}' must be {what}, not {shown[:80]}", path=path, fix=fix)


def want_number(
    value: Any, key: str, path: str | Path | None, *, min: float | None = None, max: float | None = None
) -> float:
    """``value`` as a finite float within ``[min, max]``.

    Refuses booleans, text such as ``10ms`` or ``1e-3`` (YAML 1.1 reads an exponent without a dot
    and sign as text), infinities (``1.0e+400``, ``.inf``) and NaN.

    Raises:
        ConfigError: ``FILE: key 'x' must be ...`` with the fix.
    """
    example = f"{key.rsplit('.', 1)[-1]}: {min if min is not None and min > 0 else 10}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fix = f"write a plain number without units, e.g. {example}"
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                pass
            else:
                fix = (
                    f"YAML reads {value!r} as text; write it with a dot and a signed exponent "
                    f"(e.g. 1.0e-3) or as a decimal"
                    if math.isfinite(as_float)
                    else "use a finite number"
                )
        raise _bad(key, path, "a number", value, fix)
    if not math.isfinite(value):
        raise _bad(key, path, "a finite number", value, f"use a finite number, e.g. {example}")
    if min is not None and value < min:
        raise _bad(key, path, f"at least {min}", value, f"use a value >= {min}")
    if max is not None and value > max:
        raise _bad(key, path, f"at most {max}", value, f"use a value <= {max}")
    return float(value)


def want_int(value: Any, key: str, path: str | Path | None, *, min: int | None = None, max: int | None = None) -> int:
    """``value`` as an int within ``[min, max]``; ``2.0`` is accepted, ``2.5``, ``ten`` and booleans are not.

    Raises:
        ConfigError: ``FILE: key 'x' must be a whole number ...`` with the fix.
    """
    example = f"{key.rsplit('.', 1)[-1]}: {min if min is not None and min > 0 else 1}"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, path, "a whole number", value, f"write digits only, e.g. {example}")
    if min is not None and value < min:
        raise _bad(key, path, f"at least {min}", value, f"use a whole number >= {min}")
    if max is not None and value > max:
        raise _bad(key, path, f"at most {max}", value, f"use a whole number <= {max}")
    return value


def want_str(value: Any, key: str, path: str | Path | None, *, choices: Iterable[str] | None = None) -> str:
    """``value`` as a string, one of ``choices`` if given.

    Raises:
        ConfigError: not a string (``yes``/``no``/``on`` are booleans in YAML 1.1), or not a choice.
    """
    if not isinstance(value, str):
        raise _bad(key, path, "a string", value, f'quote it: {key.rsplit(".", 1)[-1]}: "{value}"')
    if choices is not None:
        _check_choice(value, key, path, list(choices))
    return value


def want_str_list(
    value: Any, key: str, path: str | Path | None, *, choices: Iterable[str] | None = None
) -> tuple[str, ...]:
    """``value`` as a tuple of strings.

    A bare string is refused rather than iterated (``formats: tflite`` would become
    ``('t', 'f', 'l', ...)``); so are non-string items.

    Raises:
        ConfigError: ``FILE: key 'x' must be a list of strings ...`` with the fix.
    """
    short = key.rsplit(".", 1)[-1]
    if isinstance(value, str):
        raise _bad(key, path, "a list of strings", value, f"write it as a list: {short}: [{value}]")
    if not isinstance(value, (list, tuple)):
        raise _bad(key, path, "a list of strings", value, f"write it as a list, e.g. {short}: [a, b]")
    for item in value:
        if not isinstance(item, str):
            raise _bad(key, path, "a list of strings", value, f'quote the item {item!r}: {short}: ["{item}"]')
        if choices is not None:
            _check_choice(item, key, path, list(choices))
    return tuple(value)


def _check_choice(value: str, key: str, path, choices: list[str]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"key '{key}' has unknown value {value!r}", path=path, fix=f"{hint}use one of {', '.join(choices)}"
        )


__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_EXPANDED_NODES",
    "load_file",
    "load_text",
    "want_int",
    "want_number",
    "want_str",
    "want_str_list",
]
