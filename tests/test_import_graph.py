"""No import circles in ``headrace/``: the import graph of every module, read from the AST.

How the graph is built
----------------------
Every ``.py`` file under ``headrace/`` is a node (a package is its ``__init__``). Every
``import`` and ``from ... import`` statement anywhere in a file is an edge: at module level,
inside functions and methods, inside ``try`` blocks alike — a function-level import only hides
a circle until that function runs. Relative imports are resolved against the importing module's
package. ``from package import name`` points at ``package.name`` when that is a module, else at
``package``. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit
parent-package edges are not counted (every submodule of a package whose ``__init__`` re-exports
it would otherwise form a "circle" that Python resolves without trouble).

Imports under ``if TYPE_CHECKING:`` (also ``typing.TYPE_CHECKING``) never run, so they cannot
form a runtime circle. The test runs twice: ``[runtime]`` excludes them (what Python executes),
``[with-type-checking]`` counts them too — the project's rule is "no import circles", and a
circle kept alive only for annotations still ties the modules into one unit that cannot be
read, tested or moved alone. Imports of modules outside ``headrace`` are ignored.

The server package also wires itself explicitly: ``test_server_looks_up_no_module_by_name``
checks that no module under ``headrace/server/`` imports a module named at run time
(``importlib``, ``__import__``, ``import_string``) except where the user names one (the
application, the event loop).

A failure lists every strongly connected group of modules, each import edge inside it (with
file and line, so you know what to move), and the elementary cycles through it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "headrace"
MAX_CYCLES_SHOWN = 40


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_names(package_root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package at ``package_root``."""
    names: dict[str, Path] = {}
    for path in sorted(package_root.rglob("*.py")):
        parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement (those under ``if TYPE_CHECKING:`` only if ``type_checking``)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _base_package(module: str, is_package: bool, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    parts = module.split(".")
    if not is_package:
        parts.pop()
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts)


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    if node.level:
        base = _base_package(module, is_package, node.level)
        imported = f"{base}.{node.module}" if node.module else base
    else:
        imported = node.module or ""
    for alias in node.names:
        submodule = f"{imported}.{alias.name}"
        if submodule in known:
            yield submodule
        elif imported in known:
            yield imported


def import_edges(package_root: Path, type_checking: bool = False) -> list[Edge]:
    """Every import edge between modules of the package at ``package_root``."""
    modules = module_names(package_root)
    known = set(modules)
    edges: set[Edge] = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _imports(tree, type_checking):
            for target in _targets(node, module, is_package, known):
                if target != module:
                    edges.add(Edge(module, target, node.lineno))
    return sorted(edges, key=lambda edge: (edge.source, edge.target, edge.line))


def strongly_connected(nodes: set[str], edges: list[Edge]) -> list[list[str]]:
    """Groups of two or more modules that can each reach the others (Tarjan's algorithm)."""
    graph: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        graph[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(groups)


def elementary_cycles(group: list[str], edges: list[Edge]) -> list[list[str]]:
    """Every simple cycle inside one strongly connected group, each starting at its smallest
    module (so each cycle appears once), shortest first."""
    members = set(group)
    graph: dict[str, list[str]] = {member: [] for member in group}
    for edge in edges:
        if edge.source in members and edge.target in members:
            graph[edge.source].append(edge.target)
    cycles: list[list[str]] = []
    for start in group:
        path = [start]

        def extend(node: str, start: str = start, path: list[str] = path) -> None:
            for successor in sorted(set(graph[node])):
                if successor == start:
                    cycles.append([*path, start])
                elif successor > start and successor not in path:
                    path.append(successor)
                    extend(successor)
                    path.pop()

        extend(start)
    return sorted(cycles, key=lambda cycle: (len(cycle), cycle))


def cycle_report(package_root: Path, type_checking: bool = False) -> list[str]:
    """One paragraph per strongly connected group of modules; empty when there is none."""
    edges = import_edges(package_root, type_checking)
    report = []
    for group in strongly_connected(set(module_names(package_root)), edges):
        members = set(group)
        inside = [edge for edge in edges if edge.source in members and edge.target in members]
        cycles = elementary_cycles(group, edges)
        lines = [f"{len(group)} modules import each other: {', '.join(group)}"]
        lines += [f"    {edge.source}:{edge.line} imports {edge.target}" for edge in inside]
        lines += [f"  cycle: {' -> '.join(cycle)}" for cycle in cycles[:MAX_CYCLES_SHOWN]]
        if len(cycles) > MAX_CYCLES_SHOWN:
            lines.append(f"  ... and {len(cycles) - MAX_CYCLES_SHOWN} longer cycles")
        report.append("\n".join(lines))
    return report


@pytest.mark.parametrize("type_checking", [False, True], ids=["runtime", "with-type-checking"])
def test_headrace_has_no_import_cycles(type_checking: bool) -> None:
    report = cycle_report(PACKAGE_ROOT, type_checking)
    assert not report, "import circles in headrace/:\n\n" + "\n\n".join(report)


SERVER_PACKAGE = PACKAGE_ROOT / "server"
USER_NAMED = frozenset(("server.py", "supervisor.py", "config.py"))
"""The only server modules that may look a module up by name: the application and the event
loop are named by the user."""
BY_NAME = frozenset(("importlib", "__import__", "import_module", "import_string"))


def lookups_by_name(path: Path) -> list[str]:
    """Where ``path`` imports or calls something that finds a module by its name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0], *(alias.name for alias in node.names)]
        elif isinstance(node, ast.Name | ast.Attribute):
            names = [node.id if isinstance(node, ast.Name) else node.attr]
        found += [f"{path.name}:{node.lineno} {name}" for name in names if name in BY_NAME]
    return found


def test_server_looks_up_no_module_by_name() -> None:
    paths = sorted(SERVER_PACKAGE.rglob("*.py"))
    assert any(path.parent.name == "wires" for path in paths)  # the walk saw the package
    found = [hit for path in paths if path.name not in USER_NAMED for hit in lookups_by_name(path)]
    assert found == [], "server modules looking modules up by name: " + ", ".join(found)


def test_the_lookup_check_sees_importlib_and_import_string(tmp_path: Path) -> None:
    module = tmp_path / "mod.py"
    module.write_text(
        "import importlib.util\nfrom headrace.utils import import_string\n"
        "def f(n):\n    return __import__(n)\n",
        encoding="utf-8",
    )
    hits = lookups_by_name(module)
    assert {hit.split(" ")[1] for hit in hits} == {"importlib", "import_string", "__import__"}


# ---------------------------------------------------------------------- the checker itself


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_checker_finds_function_level_and_relative_cycles(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import thing\n",
            "pkg/a.py": "def thing():\n    from .sub import b\n    return b\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "from ..c import value\n",
            "pkg/c.py": "import pkg.a\nvalue = 1\n",
            "pkg/d.py": "from pkg import c\n",
        },
    )
    edges = {(edge.source, edge.target) for edge in import_edges(package)}
    assert ("pkg.a", "pkg.sub.b") in edges  # function level, relative, "from package import mod"
    assert ("pkg.sub.b", "pkg.c") in edges  # two dots
    assert ("pkg.d", "pkg.c") in edges
    report = cycle_report(package)
    assert len(report) == 1
    assert report[0].startswith("3 modules import each other: pkg.a, pkg.c, pkg.sub.b")
    assert "cycle: pkg.a -> pkg.sub.b -> pkg.c -> pkg.a" in report[0]
    assert "pkg.c:1 imports pkg.a" in report[0]


def test_checker_ignores_type_checking_imports_and_parent_packages(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": (
                "import typing\nfrom typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.b import B\nelse:\n    import json\n"
                "if typing.TYPE_CHECKING:\n    import pkg.b\n"
                "class A: ...\n"
            ),
            "pkg/b.py": "from pkg.a import A\nclass B(A): ...\n",
        },
    )
    edges = {(edge.source, edge.target) for edge in import_edges(package)}
    assert edges == {("pkg", "pkg.a"), ("pkg.b", "pkg.a")}
    assert cycle_report(package) == []
    assert ("pkg.a", "pkg.b") in {(e.source, e.target) for e in import_edges(package, True)}
    assert cycle_report(package, type_checking=True)[0].startswith(
        "2 modules import each other: pkg.a, pkg.b"
    )
