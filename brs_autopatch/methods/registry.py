"""Finding a method by name: the built-ins, then the ``brs_autopatch.methods`` entry points."""

from __future__ import annotations

from ..config.variables import BUILTIN_METHODS
from ..errors import ConfigError
from .base import ENTRY_POINT_GROUP, Fetch, Method, MethodContext, import_failure
from .custom import custom_method
from .sts import assume_role_method
from .web_identity import web_identity_method


def served_method(context: MethodContext) -> Fetch:
    """``served``: the launch tree's credential server (``brs-run --serve`` sets it up).

    Lives in ``brs_autopatch.methods.served``; imported only where it is used.
    """
    from .served import served_method as method

    return method(context)


_BUILTINS: dict[str, Method] = {
    "sts": assume_role_method,
    "web-identity": web_identity_method,
    "custom": custom_method,
    "served": served_method,
}


def available() -> dict[str, str]:
    """Method name -> where it comes from, built-ins first."""
    from importlib.metadata import entry_points

    found = {name: f"brs_autopatch.methods:{fn.__name__}" for name, fn in _BUILTINS.items()}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def load(name: str) -> Method:
    """The method called ``name``; ConfigError listing the available ones if unknown."""
    if name in _BUILTINS:
        # Built-ins are also entry points; resolving them directly skips scanning
        # every installed distribution's metadata on the common path.
        return _BUILTINS[name]
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            method = entry.load()
        except (Exception, SystemExit) as error:  # a broken plugin: say which one, in one line
            raise ConfigError(
                f"BRS_METHOD={name!r} is not valid: its entry point {entry.value} cannot be "
                f"loaded ({import_failure(error)}); expected a plugin that imports cleanly"
            ) from None
        if not callable(method):
            raise ConfigError(
                f"BRS_METHOD={name!r} is not valid: its entry point {entry.value} is not callable"
            )
        return method  # type: ignore[no-any-return]
    names = ", ".join(sorted(available()))
    raise ConfigError(f"BRS_METHOD={name!r} is not valid: expected one of {names}")



assert set(_BUILTINS) == set(BUILTIN_METHODS)
