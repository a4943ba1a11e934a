"""The shape of the package (#12, #24): no import cycle (imports inside functions count), no public
name hiding a submodule, no format/runtime name compared outside the registries, registries."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import edgetransfer

PKG = Path(edgetransfer.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of this package that ``path`` imports, anywhere: at module level and inside
    functions (an import deferred into a function still ties the two modules together), as
    /work/shared/tools/structure_check.py counts them. ``if TYPE_CHECKING:`` blocks never run and
    are not counted. ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("edgetransfer"):
                for a in node.names:
                    full = f"{base}.{a.name}"
                    out.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            for a in node.names:
                n = a.name
                while n and n not in modules:
                    n = n.rpartition(".")[0]
                if n.startswith("edgetransfer"):
                    out.add(n)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py") if "_metadata_schema" not in p.name}
    names = set(files)
    return {m: {i for i in _imports(p, m, names) if i in files and i != m} for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan). A submodule importing its
    own package's ``__init__`` (``from . import x``) is implicit in Python and not an edge we can
    break, so edges from a module up to a package that contains it are left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if v.startswith(w + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_inside_functions_are_counted():
    graph = _graph()
    # training/__init__.py imports .fit only inside train(): the edge must be seen all the same
    assert "edgetransfer.training.fit" in graph["edgetransfer.training"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"p.m": {"p"}, "p": {"p.m"}}) == []  # a submodule's own package is not a cycle


def test_no_import_cycle_inside_the_package():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in cycles)


# A format or runtime name compared outside the registries is code branching on a name instead of
# asking the registry for a capability (issue 24, item 3); the same rule as structure_check.py.
_NAMES = {"tflite", "onnx", "tflm", "litert", "onnxruntime", "openvino", ".tflite", ".onnx"}
_REGISTRY_DIRS = {"formats", "runtime", "cli"}


def _name_comparisons() -> list[str]:
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        if set(path.relative_to(PKG).parts[:-1]) & _REGISTRY_DIRS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            consts = []
            for c in [node.left, *node.comparators]:
                if isinstance(c, ast.Constant) and isinstance(c.value, str):
                    consts.append(c.value)
                elif isinstance(c, (ast.Tuple, ast.List, ast.Set)):
                    consts += [e.value for e in c.elts if isinstance(e, ast.Constant)]
            if _NAMES & set(consts):
                hits.append(f"{path.relative_to(PKG.parent)}:{node.lineno}")
    return hits


def test_no_format_or_runtime_name_is_compared_outside_the_registries():
    hits = _name_comparisons()
    assert not hits, f"{len(hits)} comparisons of a format/runtime name outside formats/, runtime/, cli/: {hits}"


def test_no_public_name_shadows_a_submodule():
    submodules = {m.name for m in pkgutil.iter_modules([str(PKG)])}
    clash = sorted(set(edgetransfer.__all__) & submodules)
    assert not clash, f"public names hiding submodules: {clash}"
    for name in (
        "training",
        "exporter",
        "evaluation",
        "gate",
        "exporter.formats",
        "exporter.quantization",
        "report",
        "data",
    ):
        assert importlib.import_module(f"edgetransfer.{name}").__name__ == f"edgetransfer.{name}"


def test_format_registry_answers_every_format_question():
    from edgetransfer.exporter import formats

    assert set(formats.file_formats()) == {"tflite", "onnx"} and "tflm" in formats.names()
    assert formats.for_path("x/model.onnx").name == "onnx" and formats.get("tflite").suffix == ".tflite"
    assert formats.get("tflm").packages == "tflite" and formats.get("onnx").runtimes[0] == "onnxruntime"


def test_records_refuse_renamed_keys(tmp_path):
    import json

    from edgetransfer.errors import ConfigError
    from edgetransfer.records import IOSpec, RunManifest

    assert IOSpec.from_json(IOSpec(32).to_json()) == IOSpec(32)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"kind": "edgetransfer.run", "schema": 2, "backbone": "x", "input_sise": 3}))
    with pytest.raises(ConfigError, match="input_sise"):
        RunManifest.read(path)
