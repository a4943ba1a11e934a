"""The shape of the package (#12): no import cycle, no public name hiding a submodule, registries."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import edgetransfer

PKG = Path(edgetransfer.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Modules of this package that ``path`` imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("edgetransfer"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("edgetransfer"))
    return out


def test_no_import_cycle_inside_the_package():
    files = {_module_name(p): p for p in PKG.rglob("*.py") if "_metadata_schema" not in p.name}
    graph = {m: {i for i in _imports(p, m) if i in files and i != m} for m, p in files.items()}
    # a module imports its package's __init__ implicitly; that edge is not a cycle we can break
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_no_public_name_shadows_a_submodule():
    submodules = {m.name for m in pkgutil.iter_modules([str(PKG)])}
    clash = sorted(set(edgetransfer.__all__) & submodules)
    assert not clash, f"public names hiding submodules: {clash}"
    for name in ("training", "exporter", "evaluation", "gate", "formats", "quantization", "report", "data"):
        assert importlib.import_module(f"edgetransfer.{name}").__name__ == f"edgetransfer.{name}"


def test_format_registry_answers_every_format_question():
    from edgetransfer import formats

    assert set(formats.file_formats()) == {"tflite", "onnx"} and "tflm" in formats.names()
    assert formats.for_path("x/model.onnx").name == "onnx" and formats.get("tflite").suffix == ".tflite"
    assert formats.get("tflm").packages == "tflite" and formats.get("onnx").runtimes[0] == "onnxruntime"


def test_records_refuse_renamed_keys(tmp_path):
    import json

    import pytest

    from edgetransfer.errors import ConfigError
    from edgetransfer.records import IOSpec, RunManifest

    assert IOSpec.from_json(IOSpec(32).to_json()) == IOSpec(32)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"kind": "edgetransfer.run", "schema": 2, "backbone": "x", "input_sise": 3}))
    with pytest.raises(ConfigError, match="input_sise"):
        RunManifest.read(path)
