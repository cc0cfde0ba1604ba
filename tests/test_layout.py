"""The test suite's own layout (tests/README.md): folders that mirror the package, one
home for each fixture and helper.

Shared fixtures live in conftest.py, plain helpers in the helper modules beside it
(stsclient.py, launching.py, engine_helpers.py, ...). A test module that imports
another test module (or conftest) runs that module's fixtures and module-level code
a second time under another name, and a fixture written twice drifts apart; both
are read here from the source with ``ast``, over every .py file under tests/.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "brs_autopatch"
# Folders under tests/ that are not a subpackage's: the engine tests (a marker of their
# own, run by scripts/test-engines) and the programs they start.
NOT_A_SUBPACKAGE = {"engines", "engines/engine_apps"}


def _sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(TESTS.rglob("*.py"))}


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_") or last.endswith("_test")


def _imported_modules(tree: ast.Module) -> list[str]:
    """Every module an import statement names, at any depth (lazy imports too)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from . import test_x` style would need a package; none exists under tests/
    return names


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
        isinstance(target, ast.Name) and target.id == "fixture"
    )


def _fixtures(tree: ast.Module) -> list[tuple[str, int]]:
    """(name, line) of every function decorated as a pytest fixture, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            _is_fixture(d) for d in node.decorator_list
        ):
            found.append((_fixture_name(node), node.lineno))
    return found


def _fixture_name(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The name pytest knows the fixture by: ``name=`` if given, else the function's."""
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return node.name


def test_no_test_module_imports_another_test_module_or_conftest() -> None:
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path, tree in _sources().items()
        for name in _imported_modules(tree)
        if _is_test_module(name)
    ]
    assert offenders == [], "move what they share to conftest.py or a helper module:\n" + "\n".join(offenders)


def test_no_fixture_is_defined_twice() -> None:
    homes: dict[str, list[str]] = defaultdict(list)
    for path, tree in _sources().items():
        for name, line in _fixtures(tree):
            homes[name].append(f"{path.relative_to(TESTS)}:{line}")
    twice = {name: places for name, places in homes.items() if len(places) > 1}
    assert twice == {}, f"define each fixture once (conftest.py if it is shared): {twice}"


def _folders(root: Path) -> set[str]:
    return {
        str(path.relative_to(root)) for path in root.rglob("*")
        if path.is_dir() and "__pycache__" not in path.parts and not path.name.startswith(".")
    }


def test_each_folder_names_a_subpackage() -> None:
    subpackages = _folders(PACKAGE)
    assert {"config", "credentials", "serve"} <= subpackages  # the check sees the package
    strays = _folders(TESTS) - subpackages - NOT_A_SUBPACKAGE
    assert strays == set(), f"tests/ folders mirror brs_autopatch/ (tests/README.md): {sorted(strays)}"


def test_test_modules_have_unique_basenames() -> None:
    # No __init__.py under tests/: pytest imports each test module by its basename
    # (prepend mode), so two test_x.py in different folders would collide.
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        seen[path.name].append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
    assert not list(TESTS.rglob("__init__.py"))


def test_the_checks_see_what_they_look_for() -> None:
    # The two checks above pass on an empty list as well: prove they parse what they judge.
    tree = ast.parse(
        "import pytest\nfrom test_x import a\n"
        "def f():\n    import conftest\n"
        "@pytest.fixture\ndef one(): ...\n"
        "@pytest.fixture(scope='session', name='two')\ndef _two(): ...\n"
    )
    assert [name for name in _imported_modules(tree) if _is_test_module(name)] == ["test_x", "conftest"]
    assert [name for name, _ in _fixtures(tree)] == ["one", "two"]
    sources = _sources()
    assert TESTS / "conftest.py" in sources and len(sources) > 40
    all_fixtures = {name for tree in sources.values() for name, _ in _fixtures(tree)}
    assert {"sts", "aws_env", "base_env", "launch", "node"} <= all_fixtures
