"""The import system, used without running anyone's code: post-import hooks (run a
function right after a module is first imported) and :func:`locate` (can a module be
imported?).

The same protocol as ``wrapt.register_post_import_hook`` (a meta-path finder that
chains the real loader, hooks fire once after the module body ran, or at once if
the module is already imported), in a few lines of stdlib. Why not wrapt itself:
this module is imported by every Python process started under ``brs-run``, and
``import wrapt`` 2.x costs 30-85 ms there (it imports asyncio); this one costs
nothing until botocore is imported.

A hook that raises makes that import fail, and its hooks stay registered, so a
second import tries again instead of silently succeeding unpatched.
"""

from __future__ import annotations

import os
import sys
from _thread import RLock

# typing, collections.abc and types are not imported at run time: this module runs in
# every interpreter started under brs-run, before anything else, and those cost ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import ModuleType
    from typing import Any

    Hook = Callable[[ModuleType], None]

_lock = RLock()
_hooks: dict[str, list[Hook]] = {}


def _reset_after_fork() -> None:
    # A parent thread may have held the lock, or been between find_spec's two lock
    # holds, at fork time: the child has no such thread.
    global _lock
    _lock = RLock()
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            finder._busy = set()


os.register_at_fork(after_in_child=_reset_after_fork)


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported (now, if it already is)."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _hooks.setdefault(name, []).append(hook)
            if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
                sys.meta_path.insert(0, _Finder())
    if module is not None:
        hook(module)


def discard(hook: Hook) -> None:
    """Forget ``hook`` wherever it is still waiting."""
    with _lock:
        for name in list(_hooks):
            _hooks[name] = [h for h in _hooks[name] if h is not hook]
            if not _hooks[name]:
                del _hooks[name]


def _fire(module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(module.__name__, [])
    for index, hook in enumerate(hooks):
        try:
            hook(module)
        except BaseException:
            with _lock:  # re-arm this hook and the ones not run yet
                _hooks.setdefault(module.__name__, [])[:0] = hooks[index:]
            raise


class _Finder:
    """Finds nothing itself; wraps the loader the other finders return for watched names."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        with _lock:
            if fullname not in _hooks or fullname in self._busy:
                return None
            self._busy.add(fullname)
        try:
            from importlib.util import find_spec

            spec = find_spec(fullname)  # ask the rest of sys.meta_path
        finally:
            with _lock:
                self._busy.discard(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
        return spec


class _Loader:
    """Runs the real loader, puts it back on the module, then fires the hooks."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Tools (pkgutil, importlib.resources, coverage) look at __loader__ and
        # __spec__.loader: they should see the real loader, not this wrapper.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _fire(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
    """What this module's finder on ``sys.meta_path`` answers for ``fullname``.

    For brs-run's bootstrap, which imports this package from its own finder while the
    import system's search for botocore has already passed this one.
    """
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            return finder.find_spec(fullname, path, target)
    return None


def locate(module: str, search_path: Sequence[str] = ()) -> bool:
    """Whether ``module`` (dotted) can be imported, found without running any of its code.

    ``importlib.util.find_spec("a.b")`` would import (run) package ``a``: walk the
    packages' search locations instead. The top-level name goes through every finder
    (editable installs have their own); ``search_path`` is searched after sys.path.
    """
    from importlib.machinery import PathFinder
    from importlib.util import find_spec

    top, *rest = module.split(".")
    try:
        spec = find_spec(top) or PathFinder.find_spec(top, list(search_path))
    except (ImportError, ValueError):
        return False
    name = top
    for part in rest:
        locations = None if spec is None else spec.submodule_search_locations
        if not locations:
            return False  # not a package: "a.b" cannot be imported
        name = f"{name}.{part}"
        existing = sys.modules.get(name)
        spec = existing.__spec__ if existing is not None else PathFinder.find_spec(name, list(locations))
    return spec is not None


def lazy_attributes(namespace: dict[str, Any], table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for a package's public names, imported on use.

    ``table`` maps a name to the submodule (relative to the package whose globals are
    ``namespace``) that defines it; the value is kept in ``namespace`` after the first
    lookup. Every Python child under brs-run imports this package's ``__init__``:
    nothing behind these names loads until a program asks for one.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
