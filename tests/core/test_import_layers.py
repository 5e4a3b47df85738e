"""core/hub and frontend read top-down: no import cycle, found by reading the imports (ast), function-local ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Folder -> the package it installs as (pyproject's package-dir).
PACKAGES = {REPO / "core" / "hub": "roost.core.hub", REPO / "frontend": "roost.frontend"}


def _module_name(path: Path, folder: Path, package: str) -> str:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every module ``module`` imports at run time, anywhere in its body (typing-only imports left out)."""
    found: set[str] = set()
    base = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            found.add(target)
            # `from . import api` imports the submodule api.
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def import_graph(packages: dict[Path, str]) -> dict[str, set[str]]:
    modules: dict[str, tuple[str, bool]] = {}
    for folder, package in packages.items():
        for path in sorted(folder.rglob("*.py")):
            modules[_module_name(path, folder, package)] = (path.read_text(encoding="utf-8"), path.name == "__init__.py")
    graph: dict[str, set[str]] = {}
    for name, (source, is_package) in modules.items():
        # A submodule always runs its parent package first; that is not an edge of a cycle.
        ancestors = {name.rsplit(".", n)[0] for n in range(1, name.count(".") + 1)}
        graph[name] = {
            target for target in imports_of(source, name, is_package) if target in modules and target != name and target not in ancestors
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_core_hub_and_frontend_have_no_import_cycle() -> None:
    graph = import_graph(PACKAGES)
    assert "roost.core.hub.state" in graph and "roost.frontend.render" in graph
    assert not cycles(graph), f"import cycles (break them by depending on state.py / render.py): {cycles(graph)}"


def test_the_app_factory_is_on_top() -> None:
    graph = import_graph(PACKAGES)
    importers = sorted(name for name, targets in graph.items() if "roost.core.hub.app" in targets)
    assert importers == [], f"modules importing the app factory, which imports every route module: {importers}"
    assert {"roost.core.hub.api", "roost.core.hub.gateway", "roost.core.hub.state"} <= graph["roost.core.hub.app"]


@pytest.mark.parametrize("local", [False, True])
def test_the_checker_finds_a_cycle(tmp_path: Path, local: bool) -> None:
    """Two modules importing each other, the second one from inside a function (the old workaround)."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "app.py").write_text("from .routes import handler\nKEY = 1\n")
    back = "def handler():\n    from .app import KEY\n    return KEY\n" if local else "from .app import KEY\n"
    (folder / "routes.py").write_text(back)
    (folder / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import KEY\n")
    graph = import_graph({folder: "pkg"})
    assert cycles(graph) == [["pkg.app", "pkg.routes"]]
    assert graph["pkg.typed"] == set()  # typing-only imports are not run-time edges
