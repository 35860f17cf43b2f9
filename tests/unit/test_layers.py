"""The layering rules, read from the source: no runtime import cycle among the packages, kernel/ imports
neither daemon, router/ and the SDK never import frontend, and no module is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.procs import REPO

PACKAGES = ("frontend", "kernel", "continuity", "gossip", "router")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
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


def test_no_runtime_import_cycle() -> None:
    mods = _modules()
    graph = {name: _runtime_imports(name, path, set(mods)) for name, path in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(m) :], m]))
            if m not in state:
                dfs(m)
        stack.pop()
        state[n] = 2

    for name in sorted(graph):
        if name not in state:
            dfs(name)


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
