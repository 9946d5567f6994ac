"""The package's layers: every import points down, none forms a cycle, modules stay short.

Every ``import`` and ``from ... import`` in ``lib/orderstudy`` is read from the source (imports
inside functions included, since those are how cycles hide), resolved to the module it names, and
checked against the layers of ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "orderstudy"

# Bottom to top. A module may import its own layer's modules and any layer below it; siblings in
# one tuple may not import each other. The report reads only the core and the registries' names.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("checkpoints",),
    ("operations", "benchmarks"),
    ("evaluation",),
    ("study",),
    ("notebook",),
    ("execution",),
    ("cli", "prepare", "__main__", "__init__"),
)
REPORT_MAY_IMPORT = {"core", "report"}
# Edges still to be removed by the benchmark registry (its params own their validation).
KNOWN_UPWARD: set[str] = set()  # none: the registries let core name benchmarks without importing them
MAX_LINES = 900
MAX_TOP_LEVEL_MODULES = 8


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Return the package's modules that ``path`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("orderstudy") and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def top(name: str) -> str:
    """Return the layer unit of a module: its first subpackage, or the top-level module's name."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(unit: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"lib/orderstudy/{unit}: not in any layer of tests/test_layers.py; add it to LAYERS "
                         "and to docs/architecture.md")


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for src, targets in sorted(edges.items()):
        for dst in sorted(targets):
            a, b = top(src), top(dst)
            if a == b or b == "__init__":
                continue
            if a == "report":
                if b not in REPORT_MAY_IMPORT:
                    problems.append(f"{src} -> {dst} (the report reads only {sorted(REPORT_MAY_IMPORT)})")
                continue
            if b == "report":
                if layer(a) <= layer("study"):
                    problems.append(f"{src} -> {dst} (the report sits above {a})")
                continue
            if layer(b) > layer(a) or (layer(b) == layer(a) < len(LAYERS) - 1):
                problems.append(f"{src} -> {dst} ({a} may not import {b})")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_a_layer():
    assert [p for p in upward_imports(graph()) if p not in KNOWN_UPWARD] == []


def test_no_import_cycle_even_through_imports_inside_functions():
    # A package's __init__ importing its own modules is a cycle in this graph only when those
    # modules import the package back: that is the cycle we forbid too.
    assert cycles(graph()) == []


def test_modules_are_short_and_the_top_level_is_small():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level


def test_the_checker_sees_an_upward_import_inside_a_function_and_a_cycle():
    edges = {"orderstudy.core.paths": {"orderstudy.study.store"}, "orderstudy.study.store": {"orderstudy.core.paths"}}
    assert upward_imports(edges) == ["orderstudy.core.paths -> orderstudy.study.store (core may not import study)"]
    assert cycles(edges) == [["orderstudy.core.paths", "orderstudy.study.store"]]
    source = "def f():\n    from ..study import store\n"
    tree = ast.parse(source)
    assert isinstance(tree.body[0].body[0], ast.ImportFrom)   # the form the scanner resolves


@pytest.mark.parametrize("sibling", ["operations", "benchmarks"])
def test_siblings_of_one_layer_may_not_import_each_other(sibling):
    other = "benchmarks" if sibling == "operations" else "operations"
    edges = {f"orderstudy.{sibling}.x": {f"orderstudy.{other}.y"}}
    assert upward_imports(edges) == [f"orderstudy.{sibling}.x -> orderstudy.{other}.y ({sibling} may not import {other})"]
