"""brs-run's command line: options generated from the variables table, the help text.

Every setting has an option, generated from the one table (brs_autopatch.config.variables.
VARIABLES), as opentelemetry-instrument does: ``BRS_CACHE_DIR`` -> ``--cache-dir VALUE``,
a boolean ``BRS_DEFER_REFRESH`` -> ``--defer-refresh`` / ``--no-defer-refresh``. An
option sets its variable for COMMAND (and wins over the environment). Options that
are not settings (``--check``, ``--help``...) are rows of ACTION_OPTIONS.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

PROG = "brs-run"

# Exit codes: the shell's for a program that cannot be run, 2 for our own usage errors.
EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

# Options that are not settings: option -> action. A new action (--serve, ...) is one row
# here and one branch in main(); these win over a generated option of the same name.
ACTION_OPTIONS: dict[str, str] = {
    "-h": "help",
    "--help": "help",
    "-V": "version",
    "--version": "version",
    "--check": "check",
    "--credential-process": "credential-process",
    "--install-pth": "install-pth",
    "--remove-pth": "remove-pth",
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
    from ..config.variables import BOOLEAN_VARIABLES, VARIABLES

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
       {PROG} --credential-process [options]
       {PROG} --install-pth | --remove-pth

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
  --credential-process     print the role's credentials as credential_process
                           JSON (for `credential_process = {PROG} --credential-process`
                           in an AWS config profile) and exit
  --install-pth            write brs_autopatch.launch.pth into this environment's
                           site-packages: every Python of it that starts with
                           BRS_ROLE_ARN set is patched, no launcher needed
                           (works where a distro's own sitecustomize shadows one
                           in site-packages); --remove-pth removes it
  --serve                  serve the role to every process of the tree, any
                           language, from a loopback container-credentials
                           endpoint (BRS_SERVE)
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
    `import brs_autopatch` in the program (or --install-pth for -I and -E) there.
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
    from ..config.variables import BOOLEAN_VARIABLES, VARIABLES

    rows: list[str] = []
    for variable, meaning in VARIABLES.items():
        option = option_name(variable)
        if variable in BOOLEAN_VARIABLES:
            spelled = f"--[no-]{option[2:]}"
        else:
            spelled = f"{option} {_metavar(variable)}"
        rows.append(f"  {variable:<30} {spelled}\n      {meaning}")
    return HELP.replace("{settings}", "\n".join(rows))
