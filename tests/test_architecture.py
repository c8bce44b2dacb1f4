"""The layers of DESIGN §7 hold in the code (import-linter, configured in pyproject.toml) and no two modules
of real code import each other, directly or around a circle (imports inside functions count; ``if
TYPE_CHECKING:`` imports do not). The circle finder is the standard library's ``ast`` and ``graphlib``."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``module`` imports anywhere except under ``if TYPE_CHECKING:``."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base_parts = parts if is_package else parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # ``from pkg import module`` imports that module; ``from mod import f``, mod
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    resolved = set()
    for name in out:
        while name and name not in known:  # ``from mod import func`` → mod; ``import a.b.c`` → a.b.c
            name = name.rpartition(".")[0]
        if name and name != module:
            resolved.add(name)
    return resolved


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    files = {}
    native = [*(src / package).rglob("*.so"), *(src / package).rglob("*.c")]  # C extensions, built or not
    extensions = {".".join(p.relative_to(src).parts[:-1] + (p.name.split(".")[0],)) for p in native}
    for path in (src / package).rglob("*.py"):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        files[".".join(parts)] = (path, is_package)
    known = set(files) | extensions
    return {mod: _imports(ast.parse(path.read_text()), mod, is_pkg, known) & set(files)
            for mod, (path, is_pkg) in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def test_no_import_circles_of_real_code():
    graph = import_graph(SRC, "tenfold")
    assert len(graph) > 100
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
                              "def f():\n    from . import c\n")
    (pkg / "c.py").write_text("def g():\n    from pkg.a import x\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.b"] == {"pkg.c"}  # the TYPE_CHECKING import does not count, the one in a function does
    assert set(find_cycle(graph)) == {"pkg.a", "pkg.b", "pkg.c"}


def test_layers_hold():
    """import-linter's contracts in pyproject.toml: who may import whom, and nothing below the api imports it."""
    out = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                          "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
