"""The layering rules, read from the source: no import cycle anywhere (type-only and deferred imports
counted), kernel/ imports neither daemon, router/ and the SDK never import frontend, and no module is over
600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.procs import REPO

PACKAGES = ("frontend", "kernel", "continuity", "gossip", "router")
EVERY_PACKAGE = (*PACKAGES, "bench", "tests")
MAX_LINES = 600


def _modules(packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` imports when it runs (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                    ).strip(".")
                subs = {f"{base}.{a.name}" for a in node.names} & known
                found.update(subs or {base})  # ``from pkg import submodule`` imports the submodule
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit([n for n in inner if isinstance(n, ast.stmt)])

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def _every_import(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``name`` names in any import statement: at module level, under ``if
    TYPE_CHECKING:``, or inside a function. An annotation-only or deferred import is still a dependency
    (the two modules cannot be read, tested or moved apart), so a cycle through one is still a cycle."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            subs = {f"{base}.{a.name}" for a in node.names} & known
            found.update(subs or {base})
    return {m for m in found if m in known and m != name}


def _import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycle_at_all() -> None:
    """No cycle among the modules of the daemons, the kernel, gossip, the SDK, bench and the tests, counting
    ``if TYPE_CHECKING:`` and function-level imports (a package's ``__init__`` is not an edge of its
    submodules: importing ``pkg.mod`` is not counted as importing ``pkg``'s names)."""
    mods = _modules(EVERY_PACKAGE)
    graph = {name: _every_import(name, path, set(mods)) for name, path in mods.items()}
    cycles = _import_cycles(graph)
    detail = ["; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_cycle_finder_counts_type_only_and_deferred_imports(tmp_path: Path) -> None:
    """The checker itself: imports under ``if TYPE_CHECKING:`` and inside a function are edges, a cycle
    is reported with its members, and a chain is not a cycle."""
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from p.b import B\n"
        "def f():\n    from . import c\n    import p.d\n"
    )
    assert _every_import("p.a", source, {"p.a", "p.b", "p.c", "p.d", "p.e"}) == {"p.b", "p.c", "p.d"}
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"e"}, "e": {"f"}, "f": {"d", "a"}}
    assert _import_cycles(graph) == [["d", "e", "f"]]


def test_layers() -> None:
    for name, path in _modules().items():
        imported = {m.split(".")[0] for m in _runtime_imports(name, path, set(_modules()))}
        top = name.split(".")[0]
        if top == "kernel":
            assert not imported & {"frontend", "router", "continuity"}, name
        if top in ("router", "continuity"):
            assert "frontend" not in imported, name


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
