"""The package's import graph: no new import circle, lazy imports included.

Every ``import`` and ``from … import`` inside ``brs_autopatch`` counts, at module level
or inside a function (a lazy import closes a circle just as well); only the bodies of
``if TYPE_CHECKING:`` are left out, since they never run. Importing a submodule imports
its parent packages: that is not an edge.

``KNOWN_CIRCLES`` lists the circles the flat layout still has (issue "one package per
stage"); it may only shrink. A new module that closes a circle fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "brs_autopatch"

KNOWN_CIRCLES: set[frozenset[str]] = {
    frozenset({"brs_autopatch.methods", "brs_autopatch.methods.served"}),
    frozenset({"brs_autopatch.patch.aio", "brs_autopatch.patch.providers"}),
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skipped.update(id(child) for child in ast.walk(node))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it imports (at any depth of its code)."""
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                named = [f"{base}.{alias.name}" for alias in node.names]
                submodules = [target for target in named if target in modules]
                if len(submodules) < len(node.names):
                    targets.append(base)
                targets.extend(submodules)
            elif isinstance(node, ast.Import):
                targets.extend(alias.name for alias in node.names)
            edges[name].update(t for t in targets if t in modules and t != name)
    return edges


def circles(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def test_the_checker_finds_a_circle_closed_by_a_lazy_import() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges) == {frozenset({"a", "b", "c"})}
    assert circles({"a": {"b"}, "b": set()}) == set()


def test_the_graph_sees_lazy_imports_and_skips_type_checking_blocks() -> None:
    edges = import_graph()
    # brs_autopatch/__init__.py imports patch only inside a function, and its
    # TYPE_CHECKING block imports settings: the first is an edge, the second is not
    # (unless another real import adds it).
    assert "brs_autopatch.patch.install" in edges["brs_autopatch"]
    assert "brs_autopatch.util.importer" in edges["brs_autopatch"]


def test_no_new_import_circle() -> None:
    found = circles(import_graph())
    new = {tuple(sorted(circle)) for circle in found - KNOWN_CIRCLES}
    assert not new, f"new import circles: {sorted(new)}"


def test_the_known_circles_list_only_shrinks() -> None:
    gone = KNOWN_CIRCLES - circles(import_graph())
    assert not gone, f"remove from KNOWN_CIRCLES, they are gone: {sorted(tuple(sorted(c)) for c in gone)}"
