"""uWSGI under brs-run: does this command line run with lazy-apps?

Without lazy-apps uWSGI loads the app in the master and forks workers without
Python's fork handlers (facts: uWSGI prefork). The answer comes from the flags, the
ini files the command loads and the ``UWSGI_*`` variables, in uWSGI's order.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PROG = "brs-run"

_UWSGI_TRUE = ("", "1", "true", "yes", "on", "y", "t")  # uWSGI reads a bare flag as true


def _ini_lazy_apps(path: str, section: str = "uwsgi") -> bool | None:
    """What ``lazy-apps`` (or ``lazy``) says in the ``[uwsgi]`` section of an ini file.

    None when the file cannot be read or does not say. ``file.ini:section`` names
    another section, as uWSGI allows.
    """
    import configparser

    if not os.path.isfile(path) and ":" in path:
        path, section = path.rsplit(":", 1)
    # uWSGI ini files repeat keys and use %(...)-like magic: read them leniently.
    parser = configparser.ConfigParser(strict=False, interpolation=None, allow_no_value=True)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error):
        return None
    if not parser.has_section(section):
        return None
    for key in ("lazy-apps", "lazy_apps", "lazy"):
        if parser.has_option(section, key):
            value = parser.get(section, key)
            return (value or "").strip().lower() in _UWSGI_TRUE
    return None


def _uwsgi_ini_files(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The ini files a uWSGI command line (and UWSGI_INI) loads, in order."""
    files: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--ini" and index + 1 < len(args):
            files.append(args[index + 1])
            index += 1
        elif arg.startswith("--ini="):
            files.append(arg[len("--ini=") :])
        elif not arg.startswith("-") and arg.split(":", 1)[0].endswith(".ini"):
            files.append(arg)  # `uwsgi app.ini`: a lone config file argument
        index += 1
    if env.get("UWSGI_INI"):
        files.insert(0, env["UWSGI_INI"])
    return files


def uwsgi_lazy_apps(command: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether a uWSGI command runs with lazy-apps: flag, UWSGI_LAZY_APPS, or an ini file.

    Later sources win, as in uWSGI: environment, then ini files, then the flags.
    """
    lazy = False
    raw = env.get("UWSGI_LAZY_APPS") or env.get("UWSGI_LAZY")
    if raw is not None:
        lazy = raw.strip().lower() in _UWSGI_TRUE
    for path in _uwsgi_ini_files(command[1:], env):
        said = _ini_lazy_apps(path)
        if said is not None:
            lazy = said
    for arg in command[1:]:
        name, has_value, value = arg.partition("=")
        if name in ("--lazy-apps", "--lazy"):
            lazy = not has_value or value.strip().lower() in _UWSGI_TRUE
    return lazy


def uwsgi_warning(command: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The warning brs-run prints before starting uWSGI without lazy-apps, else None."""
    if not os.path.basename(command[0]).startswith("uwsgi"):
        return None
    if uwsgi_lazy_apps(command, env):
        return None
    return (
        f"{PROG}: warning: uWSGI loads the app in the master and forks workers without "
        "Python's fork handlers, so workers can inherit a credentials lock held mid-refresh; "
        "run it with --lazy-apps (or lazy-apps = true in its ini file)"
    )
