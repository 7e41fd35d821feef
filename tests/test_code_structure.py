# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Code structure rules of the package: small functions, and no import cycle between the modules of one (sub)package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurolink_monai"
MAX_FUNCTION_LINES = 120
SUBPACKAGES = sorted(str(p.parent.relative_to(PACKAGE)) for p in PACKAGE.rglob("__init__.py"))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (N lines)`` of every function of the package longer than ``limit`` lines (docstring
    included, decorators not)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text(), str(path))):
            length = fn.end_lineno - fn.lineno + 1
            if length > limit:
                out.append(f"{path.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name} ({length} lines)")
    return out


def sibling_imports(folder: Path) -> dict[str, set[str]]:
    """Module name -> the modules of the same folder it imports (``from .x import``, ``from . import x`` or the
    absolute ``neurolink_monai.<folder>.x``, at any level of the file)."""
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    package = ".".join(folder.relative_to(PACKAGE.parent).parts)
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((folder / f"{name}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    module = node.module
                elif node.level == 0 and node.module and node.module.startswith(package):
                    module = node.module[len(package) + 1 :] or None
                else:
                    continue
                if module is None:
                    deps |= {a.name for a in node.names if a.name in modules}
                elif module.split(".")[0] in modules:
                    deps.add(module.split(".")[0])
            elif isinstance(node, ast.Import):
                deps |= {
                    a.name[len(package) + 1 :].split(".")[0] for a in node.names if a.name.startswith(package + ".")
                }
        graph[name] = (deps & modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, else None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_function_longer_than_the_limit():
    offenders = long_functions()
    assert not offenders, f"functions longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_no_import_cycle_inside_subpackage(subpackage):
    cycle = find_cycle(sibling_imports(PACKAGE / subpackage))
    assert cycle is None, f"import cycle in neurolink_monai/{subpackage}: {' -> '.join(cycle)}"


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
