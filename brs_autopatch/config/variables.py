"""Reading ``BRS_*`` environment variables: the table of names and the value parsers.

Each parser turns one raw string into a value or raises the one-line
:class:`~brs_autopatch.errors.ConfigError`: variable, value (hidden when secret),
accepted form. :mod:`brs_autopatch.config.settings` assembles them into ``Settings``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..util.patterns import LazyPattern

# One table: variable -> one-line meaning. `brs-run --help` is generated from it, and
# docs/configuration.md's table is checked against it (tests/test_docs.py).
VARIABLES: dict[str, str] = {
    "BRS_ROLE_ARN": "role to assume; a comma-separated list is a role chain; activates patching",
    "BRS_ROLE_SESSION_NAME": "RoleSessionName (2-64 chars of [A-Za-z0-9_+=,.@-])",
    "BRS_DURATION_SECONDS": "DurationSeconds, 900-43200 (at most 3600 for a role chain)",
    "BRS_DEFER_REFRESH": "true: fetch lazily on first use; false: fetch at start, refresh ahead",
    "BRS_EXTERNAL_ID": "ExternalId (secret: never echoed)",
    "BRS_ASSUME_ROLE_KWARGS": "JSON object of further AssumeRole parameters (secret: never echoed)",
    "BRS_STS_REGION": "region of the STS client that assumes the role",
    "BRS_STS_ENDPOINT_URL": "endpoint of that STS client (AWS_ENDPOINT_URL_STS works too)",
    "BRS_STS_CLIENT_KWARGS": "JSON object of further STS client keywords (secret: never echoed)",
    "BRS_ENABLED": "kill switch, default true",
    "BRS_LOG_LEVEL": "level of the 'brs_autopatch' logger, written to stderr",
    "BRS_ON_ERROR": "raise (default) or warn: what bad settings do at start-up",
    "BRS_PROPAGATE": "patch child Python processes under brs-run, default true",
    "BRS_ADVISORY_REFRESH_SECONDS": "advisory refresh window (default: from the lifetime)",
    "BRS_MANDATORY_REFRESH_SECONDS": "mandatory refresh window (default 60)",
    "BRS_CACHE_DIR": "share credentials between processes through files in this directory",
    "BRS_MFA_SERIAL": "MFA device serial number or ARN",
    "BRS_MFA_TOKEN_COMMAND": "command printing a 6-digit MFA code, no shell (secret: never echoed)",
    "BRS_MFA_TIMEOUT_SECONDS": "time limit of that command, default 30",
    "BRS_METHOD": "how credentials are obtained: sts (default), web-identity, custom, or a plugin",
    "BRS_WEB_IDENTITY_TOKEN_FILE": "token file for the web-identity method, re-read every refresh",
    "BRS_CUSTOM_METHOD": "package.module:callable for the custom method",
    "BRS_PROFILE": "take the role (role_arn, source_profile, mfa_serial, ...) from this AWS config profile",
    "BRS_ADOPT_OWN_KEYS": "explicit keys that these credentials issued get the refreshing ones, default true",
    "BRS_SERVE": "serve the role to clients that do not use botocore: the launch tree (brs-run --serve), "
    "or from inside the process (import brs_autopatch)",
}

# The settings that take a boolean: brs-run gives them --x / --no-x options. A boolean
# variable added to VARIABLES belongs here too.
BOOLEAN_VARIABLES = frozenset(
    {"BRS_DEFER_REFRESH", "BRS_ENABLED", "BRS_PROPAGATE", "BRS_ADOPT_OWN_KEYS", "BRS_SERVE"}
)

# BRS_* names the project's own tools use, which are not settings: never reported as typos.
INTERNAL_VARIABLES = frozenset(
    {
        "BRS_BOOTSTRAP",  # brs-run -> its bootstrap (brs_autopatch.launch.main)
        "BRS_CREDENTIAL_PROCESS_ACTIVE",  # brs-run --credential-process's recursion guard
        "BRS_SERVED_ROLE_ARN",  # brs-run --serve -> its tree: the role served (brs_autopatch.config.nested)
        "BRS_VENV",  # scripts/_venv.sh: which venv the scripts use
        "BRS_TEST_WORKERS",  # scripts/test: pytest-xdist workers
        "BRS_TEST_NO_APT",  # scripts/test: no apt-get install of the AWS CLI v2
        # scripts/test-matrix (docs/development.md)
        "BRS_MATRIX",
        "BRS_MATRIX_DIR",
        "BRS_MATRIX_PYTEST_ARGS",
        "BRS_REQUIRE_ASYNC",
        # scripts/test-pythons (docs/development.md)
        "BRS_PYTHONS",
        "BRS_PYTHONS_REBUILD",
        "BRS_PYTHONS_PYTEST_ARGS",
        # scripts/test-engines (docs/recipes.md)
        "BRS_ENGINES",
        "BRS_ENGINES_SKIP",
        "BRS_ENGINES_SPARK",
        "BRS_ENGINES_VENV",
        "BRS_ENGINES_PYTHON",
        # scripts/check-bare-debian (docs/development.md)
        "BRS_BARE_TEST_ARGS",
    }
)
PREFIX = "BRS_"

# Never echoed in errors. BRS_MFA_TOKEN_COMMAND may hold a TOTP seed (oathtool --totp -b SEED).
SECRET_VARIABLES = frozenset(
    {"BRS_EXTERNAL_ID", "BRS_ASSUME_ROLE_KWARGS", "BRS_STS_CLIENT_KWARGS", "BRS_MFA_TOKEN_COMMAND"}
)
BUILTIN_METHODS = ("sts", "web-identity", "custom", "served")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# IAM role ARN in any partition (aws, aws-cn, aws-us-gov, aws-iso-b, ...), optional path.
_ROLE_ARN = LazyPattern(r"arn:aws(?:-[a-z]+)*:iam::\d{12}:role/(?:[\x21-\x7e]*/)?[A-Za-z0-9_+=,.@-]{1,64}")
_SESSION_NAME = LazyPattern(r"[A-Za-z0-9_+=,.@-]{2,64}")
SESSION_NAME_FORM = "2 to 64 characters of A-Z a-z 0-9 _+=,.@-"  # what _SESSION_NAME accepts
_EXTERNAL_ID = LazyPattern(r"[A-Za-z0-9_+=,.@:/-]{2,1224}")
_MFA_SERIAL = LazyPattern(r"[A-Za-z0-9_+=/:,.@-]{9,256}")
_METHOD_NAME = LazyPattern(r"[a-z0-9][a-z0-9_.-]{0,63}")
_CALLABLE_PATH = LazyPattern(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", re.ASCII)

MIN_DURATION, MAX_DURATION, MAX_CHAINED_DURATION = 900, 43200, 3600


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``BRS_*`` names in ``env`` that are neither settings nor internal, sorted, each with
    the closest setting (a did-you-mean) or None. Known names come from VARIABLES only.
    """
    unknown = sorted(
        name
        for name in env
        if name.startswith(PREFIX)
        and name not in VARIABLES
        and name not in INTERNAL_VARIABLES
        and env[name].strip()  # empty counts as unset, for unknown names too
    )
    if not unknown:
        return []
    import difflib  # only when there is a typo to explain

    # Compare what follows "BRS_": the shared prefix would make every name look close.
    tails = {name[len(PREFIX) :]: name for name in VARIABLES}
    found: list[tuple[str, str | None]] = []
    for name in unknown:
        close = difflib.get_close_matches(name[len(PREFIX) :], list(tails), n=1, cutoff=0.6)
        found.append((name, tails[close[0]] if close else None))
    return found


def describe_unknown(found: list[tuple[str, str | None]]) -> str:
    """``BRS_ROLE_AR (did you mean BRS_ROLE_ARN?), BRS_X``: one line for a warning."""
    return ", ".join(f"{name} (did you mean {close}?)" if close else name for name, close in found)


def bad(name: str, value: str | None, accepted: str) -> ConfigError:
    """Build the one-line error: variable, value (hidden if secret), accepted form."""
    if value is None or name in SECRET_VARIABLES:
        shown = "(value hidden)"
    else:
        shown = repr(value if len(value) <= 200 else value[:200] + "...")
    return ConfigError(f"{name}={shown} is not valid: expected {accepted}")


def parse_bool(name: str, raw: str) -> bool:
    """Booleans accept 1/0, true/false, yes/no, on/off in any case."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad(name, raw, "a boolean: 1/0, true/false, yes/no or on/off")


def parse_int(name: str, raw: str, low: int, high: int, what: str) -> int:
    text = raw.strip()
    accepted = f"an integer number of {what} from {low} to {high}"
    if not re.fullmatch(r"[+-]?\d{1,12}", text):
        raise bad(name, raw, accepted)
    value = int(text)
    if not low <= value <= high:
        raise bad(name, raw, accepted)
    return value


# A JSON value is a handful of parameters: a larger one is a mistake (or an attack), and
# deep nesting would otherwise end in a RecursionError traceback from the json module.
MAX_JSON_CHARS = 65536
MAX_JSON_DEPTH = 32


def parse_json_object(name: str, raw: str) -> dict[str, Any]:
    if len(raw) > MAX_JSON_CHARS:
        raise bad(name, raw, f"a JSON object of at most {MAX_JSON_CHARS} characters")
    # Before json.loads: how deep the json module recurses before it gives up, and with
    # which error, is the interpreter's business (CPython 3.14 measures the C stack, not
    # the recursion limit); the message the user gets must not be.
    if _bracket_depth(raw) > MAX_JSON_DEPTH:
        raise bad(name, raw, f"a JSON object nested at most {MAX_JSON_DEPTH} levels deep")
    try:
        value = json.loads(raw)
    except ValueError:
        raise bad(name, raw, 'a JSON object such as {"Key": "value"} (it does not parse)') from None
    if not isinstance(value, dict):
        raise bad(name, raw, 'a JSON object such as {"Key": "value"} (not an object)')
    if _depth(value) > MAX_JSON_DEPTH:
        raise bad(name, raw, f"a JSON object nested at most {MAX_JSON_DEPTH} levels deep")
    return value


# What _bracket_depth looks at: a bracket or the start of a string; the rest of a string.
_JSON_STRUCTURE = re.compile(r'[\[\]{}"]')
_JSON_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _bracket_depth(raw: str) -> int:
    """How deep arrays and objects nest in the text, as far as json.loads would read it.

    From the text alone, skipping strings; it stops where the first value closes (or the
    text breaks), as the parser does, so it is never less than the depth the parser
    would reach, and it stops counting past MAX_JSON_DEPTH.
    """
    depth = deepest = position = 0
    while found := _JSON_STRUCTURE.search(raw, position):
        char, position = found.group(), found.end()
        if char == '"':
            rest = _JSON_STRING_REST.match(raw, position)
            if rest is None:
                break  # an unterminated string: all that follows is inside it
            position = rest.end()
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        else:
            depth -= 1
            if depth <= 0:
                break
    return deepest


def _depth(value: Any) -> int:
    # Iterative: a value json.loads accepted can still be too deep for a recursive walk.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def endpoint_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an STS endpoint (None: it can). Pure: no botocore.

    botocore takes any scheme and finds a bad port only when it connects, reported as
    "could not connect": refuse both here, where the user sees what they wrote.
    """
    from urllib.parse import urlsplit

    if any(char.isspace() or ord(char) < 32 for char in url):
        return "it contains spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no scheme"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        return "its port is not a number from 1 to 65535"
    host = parts.hostname or ""
    if not (re.fullmatch(_HOST, host) or ("[" in parts.netloc and re.fullmatch(_IPV6, host))):
        return "it has no valid host name"
    return None


ENDPOINT_URL_FORM = "an http:// or https:// URL with a host and an optional port 1-65535"
# Patterns, not compiled objects: compiled on first use (re caches them), not at import.
_HOST = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?"
_IPV6 = r"[0-9A-Fa-f:.]{2,45}(?:%[\w.~-]+)?"


def parse_role_chain(raw: str, name: str = "BRS_ROLE_ARN") -> tuple[str, ...]:
    # Role names may contain commas themselves: only a comma before "arn:" separates hops.
    parts = re.split(r",(?=\s*arn:)", raw) if "," in raw else [raw]
    arns = tuple(part.strip() for part in parts)
    for arn in arns:
        if not _ROLE_ARN.fullmatch(arn):
            raise bad(
                name,
                raw,
                "an IAM role ARN like arn:aws:iam::123456789012:role/NAME (any partition), "
                "or a comma-separated chain of them",
            )
    return arns


def read(env: Mapping[str, str], name: str) -> str | None:
    """An unset and an empty variable mean the same: not given."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value
