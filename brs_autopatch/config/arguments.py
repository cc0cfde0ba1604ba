"""Settings given as Python arguments (``patched(role_arns=...)``), checked at the call.

The environment's parsers check strings; Python callers pass values, so the same rules
are applied to values here, and every error names the *argument* (``role_arns``), never
a variable the caller did not set. The Settings built here record that in ``origin``,
so the checks that run later (botocore's STS model, in the factory) name it too.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..util.patterns import LazyPattern
from .settings import FIELDS, Settings
from .variables import (
    _CALLABLE_PATH,
    _EXTERNAL_ID,
    _METHOD_NAME,
    _MFA_SERIAL,
    _ROLE_ARN,
    _SESSION_NAME,
    LOG_LEVELS,
    MAX_CHAINED_DURATION,
    MAX_DURATION,
    MIN_DURATION,
    SESSION_NAME_FORM,
)

# Arguments (and keys) whose values are never echoed in an error.
_SECRET = frozenset(
    {"external_id", "assume_role_kwargs", "sts_client_kwargs", "assume_role_kwargs['ExternalId']"}
)
_ROLE_ARN_FORM = "an IAM role ARN like arn:aws:iam::123456789012:role/NAME"


def bad_argument(name: str, value: object, accepted: str) -> ConfigError:
    """The one-line error for a Python argument: name, value (unless secret), accepted form."""
    shown = "(value hidden)" if name in _SECRET else _short(repr(value))
    return ConfigError(f"{name}={shown} is not valid: expected {accepted}")


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(pattern: re.Pattern[str] | LazyPattern, accepted: str) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise bad_argument(name, value, accepted)
        return value

    return check


def _integer(low: int, high: int, what: str) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
            raise bad_argument(name, value, f"an integer number of {what} from {low} to {high}")
        return value

    return check


def _boolean(name: str, value: object) -> object:
    if not isinstance(value, bool):
        raise bad_argument(name, value, "True or False")
    return value


def _mapping(name: str, value: object) -> object:
    if not isinstance(value, Mapping):
        raise bad_argument(name, value, "a dict")
    return dict(value)


def _path(name: str, value: object) -> object:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise bad_argument(name, value, "a path (str or os.PathLike)")
    return os.path.abspath(os.path.expanduser(os.fspath(value)))


def _role_arns(name: str, value: object) -> object:
    if isinstance(value, str):
        raise bad_argument(name, value, f'a tuple of role ARNs such as ("{value}",), not a str')
    if not isinstance(value, (tuple, list)) or not value:
        raise bad_argument(name, value, f"a non-empty tuple of role ARNs ({_ROLE_ARN_FORM})")
    for index, arn in enumerate(value):
        role_arn(f"{name}[{index}]", arn)
    return tuple(value)


def role_arn(name: str, value: object) -> str:
    """One role ARN, any partition."""
    if not isinstance(value, str) or not _ROLE_ARN.fullmatch(value):
        raise bad_argument(name, value, _ROLE_ARN_FORM)
    return value


def _command(name: str, value: object) -> object:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise bad_argument(name, value, 'a non-empty tuple of strings such as ("ykman", "oath", ...)')
    if not all(isinstance(part, str) for part in value):
        raise bad_argument(name, value, "a tuple of strings")
    return tuple(value)


def _choice(*choices: str) -> Callable[[str, object], object]:
    def check(name: str, value: object) -> object:
        if not isinstance(value, str) or value.lower() not in {c.lower() for c in choices}:
            raise bad_argument(name, value, "one of " + ", ".join(choices))
        return value.upper() if choices == LOG_LEVELS else value.lower()

    return check


def _optional(check: Callable[[str, object], object]) -> Callable[[str, object], object]:
    def allow_none(name: str, value: object) -> object:
        return None if value is None else check(name, value)

    return allow_none


# Settings field -> check(name, value) -> the value to store. Every field is listed: a
# field added to Settings without a row here is refused by a test (test_arguments).
_PROFILE = re.compile(r"[\w.@+=,:/-]{1,128}")

CHECKS: dict[str, Callable[[str, object], object]] = {
    "role_arns": _role_arns,
    "role_session_name": _optional(_string(_SESSION_NAME, SESSION_NAME_FORM)),
    "duration_seconds": _optional(_integer(MIN_DURATION, MAX_DURATION, "seconds")),
    "defer_refresh": _boolean,
    "external_id": _optional(_string(_EXTERNAL_ID, "2 to 1224 characters of A-Z a-z 0-9 _+=,.@:/-")),
    "assume_role_kwargs": _mapping,
    "sts_region": _optional(_string(re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)+"), "a region such as us-east-1")),
    "sts_endpoint_url": _optional(_string(re.compile(r"https?://[^\s/]+(?:/\S*)?"), "an http(s):// URL")),
    "sts_client_kwargs": _mapping,
    "enabled": _boolean,
    "log_level": _optional(_choice(*LOG_LEVELS)),
    "on_error": _choice("raise", "warn"),
    "propagate": _boolean,
    "advisory_refresh_seconds": _optional(_integer(1, MAX_DURATION - 1, "seconds")),
    "mandatory_refresh_seconds": _optional(_integer(1, MAX_DURATION - 1, "seconds")),
    "cache_dir": _optional(_path),
    "mfa_serial": _optional(_string(_MFA_SERIAL, "an MFA device ARN or serial number (9-256 chars)")),
    "mfa_token_command": _command,
    "mfa_timeout_seconds": _integer(1, 600, "seconds"),
    "method": _string(_METHOD_NAME, "a method name: sts, web-identity, custom or a plugin's"),
    "web_identity_token_file": _optional(_path),
    "custom_method": _optional(_string(_CALLABLE_PATH, "package.module:callable")),
    "profile": _optional(_string(_PROFILE, "the name of an AWS config profile")),
    "source_profile": _optional(_string(_PROFILE, "the name of an AWS config profile")),
    "adopt_own_keys": _boolean,
    "serve": _boolean,
    "served_role_arns": _role_arns,
}


def settings_from_arguments(arguments: Mapping[str, Any], owner: str) -> Settings:
    """``Settings(**arguments)``, every value checked; errors name the argument.

    ``owner`` names the callable in the message for an unknown argument (``patched()``).
    """
    known = [name for name in FIELDS if name != "origin"]
    values: dict[str, Any] = {}
    for name, value in arguments.items():
        if name not in CHECKS:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{owner} has no argument {name!r}{hint}: expected Settings fields: {', '.join(known)}"
            )
        values[name] = CHECKS[name](name, value)
    _check_together(values)
    return Settings(**values, origin={name: name for name in values})


def _check_together(values: Mapping[str, Any]) -> None:
    """The rules between arguments that config.from_env applies between variables."""
    arns = values.get("role_arns", ())
    duration = values.get("duration_seconds")
    if len(arns) > 1 and duration is not None and duration > MAX_CHAINED_DURATION:
        raise bad_argument(
            "duration_seconds", duration, f"at most {MAX_CHAINED_DURATION} with a role chain (AWS's cap)"
        )
    advisory = values.get("advisory_refresh_seconds")
    mandatory = values.get("mandatory_refresh_seconds")
    if advisory is not None and mandatory is not None and not mandatory < advisory:
        raise bad_argument(
            "mandatory_refresh_seconds", mandatory, f"fewer seconds than advisory_refresh_seconds={advisory}"
        )
    if bool(values.get("mfa_serial")) != bool(values.get("mfa_token_command")):
        missing = "mfa_token_command" if values.get("mfa_serial") else "mfa_serial"
        raise ConfigError(f"{missing} is missing: mfa_serial and mfa_token_command go together")
    if values.get("method") == "web-identity" and not values.get("web_identity_token_file"):
        raise ConfigError("web_identity_token_file is missing: needed with method='web-identity'")
    if values.get("method") == "custom" and not values.get("custom_method"):
        raise ConfigError("custom_method is missing: needed with method='custom'")
