"""``brs-run [options] [--] command [args...]``: run a program with brs_autopatch active.

The same as ``python -m brs_autopatch``. It validates the ``BRS_*`` settings, prepends
the bootstrap directory (brs_autopatch/bootstrap, holding only ``sitecustomize.py``) to
``PYTHONPATH``, describes this interpreter in ``BRS_BOOTSTRAP`` and replaces itself with
the program (``os.execve``: same PID, native signals and exit code). Every Python process
the program starts, directly or not, then runs the bootstrap, which loads brs_autopatch
when botocore is imported; ``BRS_BOOTSTRAP`` carries the fingerprint of the settings
checked here, so that those processes need not check them again (brs_autopatch.config.fingerprint).

This process imports neither boto3 nor wrapt, and botocore only when a setting needs
botocore's STS model or Config to be checked (``BRS_ASSUME_ROLE_KWARGS``,
``BRS_STS_CLIENT_KWARGS``) or for ``--check``.
"""

from __future__ import annotations

import os
import sys

from .. import BOOTSTRAP_DIR
from .._version import __version__
from ..config.fingerprint import BOOTSTRAP_ENV
from ..config.fingerprint import mark as fingerprint_mark
from ..errors import ConfigError

# The command line (options, help) and the uWSGI check live in their own modules;
# their names are re-exported here, where callers have always found them.
from .options import (
    ACTION_OPTIONS,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    PROG,
    USAGE,
    Invocation,
    UsageError,
    help_text,
    option_name,
    parse_args,
)
from .program import NotRunnable, hint, interpreter_warning, program_path, resolve
from .uwsgi import uwsgi_lazy_apps, uwsgi_warning

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

BOOTSTRAP_PROTOCOL = "2"  # brs_autopatch/bootstrap/sitecustomize.py PROTOCOL
_BOOTSTRAP_TAIL = os.sep + os.path.join("brs_autopatch", "bootstrap")

__all__ = [
    "ACTION_OPTIONS",
    "BOOTSTRAP_DIR",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "PROG",
    "USAGE",
    "Invocation",
    "NotRunnable",
    "UsageError",
    "bootstrap_value",
    "build_pythonpath",
    "child_environment",
    "execute",
    "help_text",
    "main",
    "option_name",
    "parse_args",
    "resolve",
    "uwsgi_lazy_apps",
    "validate",
]

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


def bootstrap_value(checked: Mapping[str, str] | None = None) -> str:
    """``2:X.Y:<fingerprint>:<bootstrap dir>:<sys.prefix>``: what the bootstrap compares its
    interpreter with (bootstrap/sitecustomize.py), and the fingerprint of the settings this
    launcher checked in ``checked`` (brs_autopatch.config.fingerprint; ``-`` for none)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    mark = "-" if checked is None else fingerprint_mark(checked)
    return f"{BOOTSTRAP_PROTOCOL}:{version}:{mark}:{BOOTSTRAP_DIR}:{sys.prefix}"


def child_environment(checked: Mapping[str, str]) -> dict[str, str]:
    """``checked`` (an environment whose settings :func:`validate` passed) plus what makes
    the bootstrap run in every Python child."""
    env = dict(checked)
    env["PYTHONPATH"] = build_pythonpath(env.get("PYTHONPATH"))
    env[BOOTSTRAP_ENV] = bootstrap_value(checked)
    return env


def validate(env: Mapping[str, str], command: Sequence[str] = ()) -> bool:
    """Whether to patch (False: BRS_ENABLED=false). Raises ConfigError for bad settings.

    Runs the validation plan (:func:`brs_autopatch.plan.check`): every bad value is
    refused here, before the program starts, except what only running the program's
    own code can tell (BRS_CUSTOM_METHOD's module is located, not imported; a plugin
    must be installed, it is not loaded): the program's plan reports those, as
    botocore is imported. botocore is loaded here only for BRS_ASSUME_ROLE_KWARGS and
    BRS_STS_CLIENT_KWARGS.
    """
    from .. import plan
    from ..config.from_env import from_env
    from ..config.variables import parse_bool

    enabled = env.get("BRS_ENABLED", "")
    if enabled.strip() and not parse_bool("BRS_ENABLED", enabled):
        return False  # the kill switch works even when other settings are broken
    settings = from_env(env)
    if not settings.active:
        from ..config.variables import describe_unknown, unknown_variables

        typos = unknown_variables(env)
        raise ConfigError(
            "BRS_ROLE_ARN is not set: expected the role to assume "
            "(or --role-arn; BRS_ENABLED=false runs the program unpatched)"
            + (f"; unknown: {describe_unknown(typos)}" if typos else "")
        )
    try:
        plan.check(settings, search_path=program_path(command, env.get("PATH")))
    except ConfigError:
        raise
    except Exception as error:  # botocore missing or refusing: one line, not a traceback
        text = " ".join(str(error).split())
        raise ConfigError(f"the settings could not be checked: {type(error).__name__}: {text}") from None
    return True


# -- main ------------------------------------------------------------------------------------------

def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")


def _serving(env: Mapping[str, str]) -> bool:
    from ..config.variables import parse_bool

    value = env.get("BRS_SERVE", "")
    return bool(value.strip()) and parse_bool("BRS_SERVE", value)


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

    if invocation.action == "credential-process":
        if invocation.command:
            _error(f"--credential-process runs no command\n{USAGE}")
            return EXIT_USAGE
        from .credential_process import run

        return run(env)

    if invocation.action in ("install-pth", "remove-pth"):
        if invocation.command:
            _error(f"--{invocation.action} runs no command\n{USAGE}")
            return EXIT_USAGE
        from . import pth

        return pth.run(invocation.action, PROG)

    command = invocation.command
    if not command:
        _error(f"no command given\n{USAGE}\nTry '{PROG} --help' for more information.")
        return EXIT_USAGE

    try:
        patch = validate(env, command)
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

    warnings = [uwsgi_warning(command, env)]
    if patch and not _serving(env):  # a served program needs no patch of its own
        warnings.append(interpreter_warning(program, command[0], env.get("PATH")))
    for warning in warnings:
        if warning is not None:
            sys.stderr.write(warning + "\n")
    if patch and _serving(env):  # serve.py (sockets, secrets, tempfile...) only for --serve
        from ..serve.start import ServeError

        try:
            env = _serve(env)
        except (ServeError, ConfigError) as error:
            _error(f"--serve: {error}")
            return EXIT_USAGE
        env = _served_children_checked(env, command)
    return execute(program, command, env)


def _serve(env: dict[str, str]) -> dict[str, str]:
    """Start the tree's credential server; the program's environment, saying which role it serves.

    Inside a tree already served, the served role asked again needs no server: the outer
    one serves this tree too (brs_autopatch.config.nested).
    """
    from ..config import nested, profiles
    from ..config.from_env import from_env
    from ..serve.start import start

    settings = from_env(env)
    if nested.serves(settings):
        return env
    # BRS_PROFILE is resolved here, from the AWS files the program will not see: its
    # processes are told the role, not the profile (whose source is not in their copies).
    resolved, _ = profiles.resolve(settings)
    return nested.tree_environment(start(env, settings), resolved)


def _served_children_checked(env: dict[str, str], command: Sequence[str]) -> dict[str, str]:
    """--serve gave the children settings of their own (BRS_METHOD=served, no MFA...):
    check those too and fingerprint them, so that its Python children need not check
    them again. Settings that do not pass leave the old fingerprint: the children then
    check everything as botocore arrives, and report it."""
    try:
        if not validate(env, command):
            return env
    except ConfigError:
        return env
    return {**env, BOOTSTRAP_ENV: bootstrap_value(env)}


# Python ignores these at start-up, and an ignored signal survives exec: `yes | head`
# under brs-run would end in "Broken pipe" errors instead of a quiet SIGPIPE.
# subprocess's restore_signals resets the same ones for its children.
_PYTHON_IGNORES = ("SIGPIPE", "SIGXFSZ", "SIGXFZ")


def _restore_signals() -> list[int]:
    """Reset the signals Python ignores to their defaults; returns the ones reset."""
    import signal

    restored = []
    for name in _PYTHON_IGNORES:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_IGN:
            signal.signal(number, signal.SIG_DFL)
            restored.append(number)
    return restored


def _ignore(numbers: list[int]) -> None:
    import signal

    for number in numbers:
        signal.signal(number, signal.SIG_IGN)


def execute(program: str, command: Sequence[str], env: Mapping[str, str]) -> int:
    """Replace this process with ``program`` (argv[0] as given); returns only on failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name != "posix":  # pragma: no cover - POSIX is what brs-run is for
        import subprocess

        return subprocess.call([program, *command[1:]], env=dict(env))
    restored = _restore_signals()
    try:
        os.execve(program, list(command), env)
    except OSError as error:
        _ignore(restored)  # this process goes on as Python, which ignores them
        reason = error.strerror or str(error)
        if isinstance(error, FileNotFoundError):  # a #! line naming a missing interpreter
            _error(f"{command[0]}: {reason} (is its #! interpreter installed?)")
            return EXIT_NOT_FOUND
        _error(f"{command[0]}: cannot execute: {reason}{hint(command[0])}")
        return EXIT_NOT_EXECUTABLE
    raise AssertionError("unreachable: execve returned")  # pragma: no cover
