"""The package's shape: the import graph follows the data flow, modules stay small.

Every ``import`` and ``from … import`` inside ``brs_autopatch`` counts, at module level
or inside a function (a lazy import closes a circle just as well), and so do the names
a package ``__init__`` imports by string on first use (``_LAZY``); only the bodies
of ``if TYPE_CHECKING:`` are left out, since they never run. Importing a submodule
imports its parent packages: that is not an edge.

``LAYERS`` is the data flow, bottom to top (docs/how-it-works.md draws it): a module
imports only from its own room or from a lower layer, never back up, and two rooms of
one layer (``config`` and ``credentials``; ``patch`` and ``session``) never import each
other; and no circle, however closed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "brs_autopatch"

# Bottom to top. A room is a subpackage or a root module; "brs_autopatch" is the
# package's own __init__ (the public facade), nothing below it.
LAYERS: list[tuple[str, ...]] = [
    ("brs_autopatch._version", "brs_autopatch.util"),
    ("brs_autopatch.errors",),
    ("brs_autopatch.config", "brs_autopatch.credentials"),
    ("brs_autopatch.methods",),
    ("brs_autopatch.plan",),
    ("brs_autopatch.build",),
    ("brs_autopatch.patch", "brs_autopatch.session"),
    ("brs_autopatch.serve",),
    ("brs_autopatch", "brs_autopatch.bootstrap"),
    ("brs_autopatch.launch",),
    ("brs_autopatch.__main__",),
]
MAX_ROOT_MODULES = 10
MAX_LINES = 350



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
    # A package's lazy public names (util.importer.lazy_attributes): `_LAZY = {"Name":
    # "sub.module", ...}` in its __init__, imported by string on first use.
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
                assert isinstance(node.value, ast.Dict)
                for value in node.value.values:
                    assert isinstance(value, ast.Constant) and isinstance(value.value, str)
                    edges[name].add(f"{name}.{value.value}")
    return edges


def room(module: str) -> tuple[int, str]:
    """The layer and room a module belongs to (the longest matching room name)."""
    best: tuple[int, str] | None = None
    for layer, rooms in enumerate(LAYERS):
        for name in rooms:
            inside = module == name or (name != "brs_autopatch" and module.startswith(name + "."))
            if inside and (best is None or len(name) > len(best[1])):
                best = (layer, name)
    assert best is not None, f"{module} is in no room of LAYERS"
    return best


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


def test_no_import_circle() -> None:
    found = {tuple(sorted(circle)) for circle in circles(import_graph())}
    assert not found, f"import circles: {sorted(found)}"


def test_no_import_runs_back_up_the_flow_or_across_a_layer() -> None:
    wrong = []
    for module, targets in import_graph().items():
        layer, name = room(module)
        for target in targets:
            target_layer, target_name = room(target)
            if target_layer > layer or (target_layer == layer and target_name != name):
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_every_module_has_a_room() -> None:
    for module in _modules():
        room(module)


def test_the_package_root_stays_small_and_no_module_is_long() -> None:
    root = [path.name for path in PACKAGE.glob("*.py")]
    assert len(root) <= MAX_ROOT_MODULES, sorted(root)
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_graph_sees_the_lazy_public_names() -> None:
    edges = import_graph()
    assert "brs_autopatch.methods.registry" in edges["brs_autopatch.methods"]
    assert "brs_autopatch.credentials.engine" in edges["brs_autopatch"]


def test_subpackage_inits_hold_only_a_docstring() -> None:
    # Every Python child under brs-run loads the packages on its start-up path: an
    # __init__ with code would run in each. methods/__init__ is the plugin API: exempt.
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name == "methods":
            continue
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init

