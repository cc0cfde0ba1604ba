"""``brs-run [options] [--] command [args...]``: run a program with brs_autopatch active.

The same as ``python -m brs_autopatch``. It validates the ``BRS_*`` settings, prepends
the bootstrap directory (brs_autopatch/bootstrap, holding only ``sitecustomize.py``) to
``PYTHONPATH``, describes this interpreter in ``BRS_BOOTSTRAP`` and replaces itself with
the program (``os.execve``: same PID, native signals and exit code). Every Python process
the program starts, directly or not, then runs the bootstrap, which imports
brs_autopatch; the patch itself waits until botocore is imported.

This process imports neither boto3 nor wrapt, and botocore only when a setting needs
botocore's STS model to be checked (``BRS_ASSUME_ROLE_KWARGS``, ``BRS_STS_CLIENT_KWARGS``)
or for ``--check``.
"""

from __future__ import annotations

import os
import sys

from ._version import __version__
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PROG = "brs-run"
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
BOOTSTRAP_ENV = "BRS_BOOTSTRAP"  # the same name as brs_autopatch.BOOTSTRAP_ENV
BOOTSTRAP_PROTOCOL = "1"  # brs_autopatch/bootstrap/sitecustomize.py PROTOCOL
_BOOTSTRAP_TAIL = os.sep + os.path.join("brs_autopatch", "bootstrap")

# Exit codes: the shell's for a program that cannot be run, 2 for our own usage errors.
EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

# -- options ------------------------------------------------------------------------------------
# Every setting has an option, generated from the one table (brs_autopatch.environment.
# VARIABLES), as opentelemetry-instrument does: BRS_CACHE_DIR -> --cache-dir VALUE, a
# boolean BRS_DEFER_REFRESH -> --defer-refresh / --no-defer-refresh. An option sets its
# variable for COMMAND (and wins over the environment).

# Options that are not settings: option -> action. A new action (--serve, ...) is one row
# here and one branch in main(); these win over a generated option of the same name.
ACTION_OPTIONS: dict[str, str] = {
    "-h": "help",
    "--help": "help",
    "-V": "version",
    "--version": "version",
    "--check": "check",
}
# Shorthands: option -> (variable, value).
SHORTHAND_OPTIONS: dict[str, tuple[str, str]] = {
    "--debug": ("BRS_LOG_LEVEL", "DEBUG"),
}
# Older spellings kept working: alias -> generated option.
ALIASES: dict[str, str] = {
    "--session-name": "--role-session-name",
}
# Metavars that read better than the variable's last word.
_METAVARS = {"KWARGS": "JSON", "ERROR": "ACTION", "ID": "VALUE"}


def option_name(variable: str) -> str:
    """``BRS_CACHE_DIR`` -> ``--cache-dir``."""
    return "--" + variable.removeprefix("BRS_").lower().replace("_", "-")


def _metavar(variable: str) -> str:
    last = variable.rsplit("_", 1)[-1]
    return _METAVARS.get(last, last)


def setting_options() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(value options: option -> variable, flags: option -> (variable, value)) from the table."""
    from .environment import BOOLEAN_VARIABLES, VARIABLES

    values: dict[str, str] = {}
    flags: dict[str, tuple[str, str]] = {}
    for variable in VARIABLES:
        option = option_name(variable)
        if variable in BOOLEAN_VARIABLES:
            flags[option] = (variable, "true")
            flags["--no-" + option[2:]] = (variable, "false")
        else:
            values[option] = variable
    for alias, target in ALIASES.items():
        if target in values:
            values[alias] = values[target]
    flags.update(SHORTHAND_OPTIONS)
    return values, flags


USAGE = f"usage: {PROG} [options] [--] command [args...]"
HELP = f"""{USAGE}
       {PROG} --check [options]

Run COMMAND with refreshing STS AssumeRole credentials in every boto3/botocore
session of every Python process it starts. The program is not modified: {PROG}
validates the BRS_* settings, puts a bootstrap sitecustomize first on PYTHONPATH
and replaces itself with COMMAND (same PID, signals and exit code).
`python -m brs_autopatch ...` is the same as `{PROG} ...`.

options (only before COMMAND; `--` ends them):
  -h, --help               show this help and exit
  -V, --version            print the version and exit
  --check                  assume the role once and report: settings (secrets
                           hidden), STS endpoint and region, source and role
                           identities, expiry, refresh windows, boto3/botocore
                           versions; exit 0 if all is well, else 1
  --debug                  the same as --log-level DEBUG
  --session-name NAME      the same as --role-session-name NAME

settings: each environment variable below has an option that sets it for COMMAND
(and wins over the environment): --option VALUE or --option=VALUE; booleans are
--option / --no-option.
{{settings}}

exit status: COMMAND's own; {EXIT_USAGE} for bad settings or usage (COMMAND is not
started); {EXIT_NOT_FOUND} if COMMAND is not found; {EXIT_NOT_EXECUTABLE} if it cannot be executed.

notes:
  - Install brs_autopatch in the environment (venv) of the Python programs you run:
    a Python from another venv or version starts unpatched (quietly).
  - `python -S`, `-I` and `-E` skip the PYTHONPATH bootstrap: use
    `import brs_autopatch` in the program (or sitecustomize_example/) there.
  - Empty PYTHONPATH entries (which mean the current directory) are dropped,
    duplicates removed; the order of your own entries is kept.
  - BRS_ENABLED=false runs COMMAND unchanged. BRS_ON_ERROR=warn runs it unpatched,
    with a warning, when the settings are bad.
  - An unknown BRS_* variable (a typo) is reported once, with the closest name.
  - Options are visible to other users in `ps`: give --external-id and
    --assume-role-kwargs as variables when they are secret.
  - uWSGI needs lazy-apps (--lazy-apps, or lazy-apps = true in its ini file) so
    that each worker loads the app itself.
"""


class UsageError(Exception):
    """A command line brs-run cannot make sense of: usage on stderr, exit 2."""


class Invocation:
    """The parsed command line."""

    def __init__(self) -> None:
        self.action = "run"  # run, or a value of ACTION_OPTIONS
        self.env_updates: dict[str, str] = {}
        self.command: list[str] = []


def parse_args(argv: Sequence[str]) -> Invocation:
    """Options up to the first non-option or ``--``; the rest is the command, untouched.

    By hand, not argparse: REMAINDER would keep a leading ``--`` as the command, and
    an option after the command belongs to the command.
    """
    values, flags = setting_options()
    parsed = Invocation()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, has_value, value = arg.partition("=")
        if arg in ACTION_OPTIONS:
            parsed.action = ACTION_OPTIONS[arg]
        elif name in values:
            if not has_value:
                if index + 1 >= len(argv):
                    raise UsageError(f"option {name} needs a value")
                index += 1
                value = argv[index]
            parsed.env_updates[values[name]] = value
        elif name in flags:
            variable, flag_value = flags[name]
            if has_value:  # --defer-refresh=false: the value is checked with the settings
                if name.startswith("--no-") or name in SHORTHAND_OPTIONS:
                    raise UsageError(f"option {name} takes no value")
                flag_value = value
            parsed.env_updates[variable] = flag_value
        else:
            raise UsageError(f"unknown option {arg!r} (options go before the command)")
        index += 1
    parsed.command = list(argv[index:])
    return parsed


def help_text() -> str:
    """The help, its settings part generated from the variables table."""
    from .environment import BOOLEAN_VARIABLES, VARIABLES

    rows: list[str] = []
    for variable, meaning in VARIABLES.items():
        option = option_name(variable)
        if variable in BOOLEAN_VARIABLES:
            spelled = f"--[no-]{option[2:]}"
        else:
            spelled = f"{option} {_metavar(variable)}"
        rows.append(f"  {variable:<30} {spelled}\n      {meaning}")
    return HELP.replace("{settings}", "\n".join(rows))


# -- PYTHONPATH and BRS_BOOTSTRAP ------------------------------------------------------------

def _is_bootstrap_dir(entry: str) -> bool:
    """Ours, or another install's (a nested brs-run from another venv, a stale one)."""
    path = os.path.normpath(os.path.abspath(entry))
    return path == BOOTSTRAP_DIR or path.endswith(_BOOTSTRAP_TAIL)


def build_pythonpath(current: str | None, bootstrap: str = BOOTSTRAP_DIR) -> str:
    """``bootstrap`` first, then the user's entries in order, without duplicates.

    Empty entries are dropped: Python reads one as the current directory, and they
    are nearly always accidents (``PYTHONPATH=/x:$PYTHONPATH`` with nothing set).
    Bootstrap directories of other brs_autopatch installs are dropped too.
    """
    entries = [bootstrap]
    seen = {os.path.normpath(bootstrap)}
    for entry in (current or "").split(os.pathsep):
        if entry == "" or _is_bootstrap_dir(entry):
            continue
        key = os.path.normpath(entry)
        if key not in seen:
            seen.add(key)
            entries.append(entry)
    return os.pathsep.join(entries)


def bootstrap_value() -> str:
    """What the bootstrap compares its own interpreter with: see bootstrap/sitecustomize.py."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return f"{BOOTSTRAP_PROTOCOL}:{version}:{BOOTSTRAP_DIR}:{sys.prefix}"


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus what makes the bootstrap run in every Python child."""
    env = dict(environ)
    env["PYTHONPATH"] = build_pythonpath(env.get("PYTHONPATH"))
    env[BOOTSTRAP_ENV] = bootstrap_value()
    return env


# -- finding the program -----------------------------------------------------------------------

class NotRunnable(Exception):
    """The program cannot be started; ``code`` is the exit status to use."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hint(command: str) -> str:
    if command.endswith(".py"):
        return f"; did you mean `{PROG} python {command}`?"
    return ""


def _executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def resolve(command: str, path_variable: str | None) -> str:
    """The file to execute for ``command``, searched on the child's PATH like a shell does.

    Raises NotRunnable: 127 when there is no such program, 126 when there is one but it
    cannot be executed (a directory, or no execute permission).
    """
    if not command:
        raise NotRunnable(EXIT_NOT_FOUND, "'': command not found")
    if os.sep in command:
        if not os.path.exists(command):
            raise NotRunnable(EXIT_NOT_FOUND, f"{command}: no such file or directory")
        if os.path.isdir(command):
            raise NotRunnable(EXIT_NOT_EXECUTABLE, f"{command}: is a directory")
        if not os.access(command, os.X_OK):
            raise NotRunnable(EXIT_NOT_EXECUTABLE, f"{command}: permission denied{_hint(command)}")
        return command
    directories = (os.defpath if path_variable is None else path_variable).split(os.pathsep)
    not_executable: str | None = None
    for directory in directories:
        candidate = os.path.join(directory, command)  # "" is the current directory, as in sh
        if _executable_file(candidate):
            return candidate
        if not_executable is None and os.path.exists(candidate):
            not_executable = candidate
    if not_executable is not None:
        raise NotRunnable(
            EXIT_NOT_EXECUTABLE, f"{not_executable}: permission denied{_hint(command)}"
        )
    message = f"{command}: command not found"
    if os.path.isfile(command):  # `brs-run app.py` with app.py here but not on PATH
        message += _hint(command) or f"; did you mean `{PROG} ./{command}`?"
    raise NotRunnable(EXIT_NOT_FOUND, message)


# -- checks before starting the program ----------------------------------------------------------

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


def _uwsgi_warning(command: Sequence[str], env: Mapping[str, str]) -> str | None:
    if not os.path.basename(command[0]).startswith("uwsgi"):
        return None
    if uwsgi_lazy_apps(command, env):
        return None
    return (
        f"{PROG}: warning: uWSGI loads the app in the master and forks workers without "
        "Python's fork handlers, so workers can inherit a credentials lock held mid-refresh; "
        "run it with --lazy-apps (or lazy-apps = true in its ini file)"
    )


def _interpreter_of(program: str, path_variable: str | None) -> str | None:
    """The Python that ``program`` is, or names on its ``#!`` line; None if not Python."""
    if os.path.basename(program).startswith("python"):
        return program
    try:
        with open(program, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":  # #!/usr/bin/env [-S] python3
        names = [word for word in words[1:] if not word.startswith("-")]
        if not names:
            return None
        try:
            return resolve(names[0], path_variable)
        except NotRunnable:
            return None
    return words[0]


def _interpreter_warning(program: str, command: str, path_variable: str | None) -> str | None:
    """A warning when ``program`` runs a Python of another environment than brs-run's.

    The bootstrap would skip such an interpreter (quietly, by design: it may lack
    brs_autopatch): say so once, here, for the program the user named.
    """
    interpreter = _interpreter_of(program, path_variable)
    if interpreter is None:
        return None
    ours = os.path.realpath(os.path.dirname(sys.executable))
    if os.path.realpath(os.path.dirname(os.path.abspath(interpreter))) == ours:
        return None
    return (
        f"{PROG}: warning: {command} runs {interpreter}, not a Python of this environment "
        f"({sys.executable}): it will start unpatched. Install brs_autopatch there and use "
        "that environment's brs-run, or run this environment's python"
    )


def _check_method(name: str) -> None:
    """A plugin method must be installed (an entry point); the built-ins always are."""
    from .settings import BUILTIN_METHODS

    if name in BUILTIN_METHODS:
        return
    from importlib.metadata import entry_points

    if entry_points(group="brs_autopatch.methods", name=name):
        return
    raise ConfigError(
        f"BRS_METHOD={name!r} is not valid: no such method is installed "
        f"(built-in: {', '.join(BUILTIN_METHODS)})"
    )


def validate(env: Mapping[str, str]) -> bool:
    """Whether to patch (False: BRS_ENABLED=false). Raises ConfigError for bad settings."""
    from dataclasses import replace

    from .settings import from_env, parse_bool

    enabled = env.get("BRS_ENABLED", "")
    if enabled.strip() and not parse_bool("BRS_ENABLED", enabled):
        return False  # the kill switch works even when other settings are broken
    settings = from_env(env)
    if not settings.active:
        from .environment import describe_unknown, unknown_variables

        typos = unknown_variables(env)
        raise ConfigError(
            "BRS_ROLE_ARN is not set: expected the role to assume "
            "(or --role-arn; BRS_ENABLED=false runs the program unpatched)"
            + (f"; unknown: {describe_unknown(typos)}" if typos else "")
        )
    _check_method(settings.method)
    if settings.assume_role_kwargs or settings.sts_client_kwargs:
        # Keys are checked against botocore's STS model: worth loading botocore for.
        # Build only: no STS call, no cache directory, no background thread.
        from .factory import build

        try:
            build(replace(settings, defer_refresh=True, cache_dir=None))
        except ConfigError:
            raise
        except Exception as error:  # a plugin that does not import, botocore refusing...
            raise ConfigError(f"the settings could not be checked: {type(error).__name__}: {error}") from None
    return True


# -- main ------------------------------------------------------------------------------------------

def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")


def _on_error_warn(env: Mapping[str, str]) -> bool:
    return (env.get("BRS_ON_ERROR") or "").strip().lower() == "warn"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``brs-run`` and ``python -m brs_autopatch``. Returns only on failure."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        invocation = parse_args(args)
    except UsageError as error:
        _error(f"{error}\n{USAGE}\nTry '{PROG} --help' for more information.")
        return EXIT_USAGE
    if invocation.action == "help":
        sys.stdout.write(help_text())
        return 0
    if invocation.action == "version":
        sys.stdout.write(f"{PROG} (brs_autopatch) {__version__}\n")
        return 0

    env = dict(os.environ)
    env.update(invocation.env_updates)

    if invocation.action == "check":
        if invocation.command:
            _error(f"--check runs no command\n{USAGE}")
            return EXIT_USAGE
        from .check import run_check

        return run_check(env)

    command = invocation.command
    if not command:
        _error(f"no command given\n{USAGE}\nTry '{PROG} --help' for more information.")
        return EXIT_USAGE

    try:
        patch = validate(env)
    except ConfigError as error:
        if not _on_error_warn(env):
            _error(str(error))
            return EXIT_USAGE
        _error(f"warning: not patching (BRS_ON_ERROR=warn): {error}")
        patch = False

    if patch:
        if not os.path.isfile(os.path.join(BOOTSTRAP_DIR, "sitecustomize.py")):
            _error(f"broken installation: {BOOTSTRAP_DIR}/sitecustomize.py is missing")
            return EXIT_USAGE
        if os.pathsep in BOOTSTRAP_DIR:
            _error(f"cannot put {BOOTSTRAP_DIR} on PYTHONPATH: its path contains {os.pathsep!r}")
            return EXIT_USAGE
        env = child_environment(env)

    try:
        program = resolve(command[0], env.get("PATH"))
    except NotRunnable as error:
        _error(str(error))
        return error.code

    warnings = [_uwsgi_warning(command, env)]
    if patch:
        warnings.append(_interpreter_warning(program, command[0], env.get("PATH")))
    for warning in warnings:
        if warning is not None:
            sys.stderr.write(warning + "\n")
    return execute(program, command, env)


def execute(program: str, command: Sequence[str], env: Mapping[str, str]) -> int:
    """Replace this process with ``program`` (argv[0] as given); returns only on failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":  # pragma: no cover - POSIX is what brs-run is for
        import subprocess

        return subprocess.call([program, *command[1:]], env=dict(env))
    try:
        os.execve(program, list(command), env)
    except OSError as error:
        reason = error.strerror or str(error)
        if isinstance(error, FileNotFoundError):  # a #! line naming a missing interpreter
            _error(f"{command[0]}: {reason} (is its #! interpreter installed?)")
            return EXIT_NOT_FOUND
        _error(f"{command[0]}: cannot execute: {reason}{_hint(command[0])}")
        return EXIT_NOT_EXECUTABLE
    raise AssertionError("unreachable: execve returned")  # pragma: no cover
