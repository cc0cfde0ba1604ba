"""Environment variables -> one validated, frozen :class:`Settings`.

Every ``BRS_*`` variable is read here and nowhere else. Parsing is pure (no boto3,
no botocore), so it can run at ``import brs_autopatch`` and in the ``brs-run``
launcher before the program starts. Checks that need botocore's STS service model
live in :mod:`brs_autopatch.validation` and run when credentials are first built.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import ConfigError

# One table: variable -> one-line meaning. The README table and `brs-run --help`
# are generated from the same names, so keep them in step.
VARIABLES: dict[str, str] = {
    "BRS_ROLE_ARN": "role to assume; a comma-separated list is a role chain; activates patching",
    "BRS_ROLE_SESSION_NAME": "RoleSessionName (2-64 chars of [A-Za-z0-9_+=,.@-])",
    "BRS_DURATION_SECONDS": "DurationSeconds, 900-43200 (at most 3600 for a role chain)",
    "BRS_DEFER_REFRESH": "true: fetch lazily on first use; false: fetch at start, refresh ahead",
    "BRS_EXTERNAL_ID": "ExternalId (secret: never echoed)",
    "BRS_ASSUME_ROLE_KWARGS": "JSON object of further AssumeRole parameters",
    "BRS_STS_REGION": "region of the STS client that assumes the role",
    "BRS_STS_ENDPOINT_URL": "endpoint of that STS client (AWS_ENDPOINT_URL_STS works too)",
    "BRS_STS_CLIENT_KWARGS": "JSON object of further STS client keywords",
    "BRS_ENABLED": "kill switch, default true",
    "BRS_LOG_LEVEL": "level of the 'brs_autopatch' logger, written to stderr",
    "BRS_ON_ERROR": "raise (default) or warn: what bad settings do at start-up",
    "BRS_PROPAGATE": "patch child Python processes under brs-run, default true",
    "BRS_ADVISORY_REFRESH_SECONDS": "advisory refresh window (default: from the lifetime)",
    "BRS_MANDATORY_REFRESH_SECONDS": "mandatory refresh window (default 60)",
    "BRS_CACHE_DIR": "share credentials between processes through files in this directory",
    "BRS_MFA_SERIAL": "MFA device serial number or ARN",
    "BRS_MFA_TOKEN_COMMAND": "command printing a 6-digit MFA code (run without a shell)",
    "BRS_MFA_TIMEOUT_SECONDS": "time limit of that command, default 30",
    "BRS_METHOD": "how credentials are obtained: sts (default), web-identity, custom, or a plugin",
    "BRS_WEB_IDENTITY_TOKEN_FILE": "token file for the web-identity method, re-read every refresh",
    "BRS_CUSTOM_METHOD": "package.module:callable for the custom method",
}

SECRET_VARIABLES = frozenset({"BRS_EXTERNAL_ID", "BRS_ASSUME_ROLE_KWARGS", "BRS_STS_CLIENT_KWARGS"})
BUILTIN_METHODS = ("sts", "web-identity", "custom")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# IAM role ARN in any partition (aws, aws-cn, aws-us-gov, aws-iso-b, ...), optional path.
_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::\d{12}:role/(?:[\x21-\x7e]*/)?[A-Za-z0-9_+=,.@-]{1,64}")
_SESSION_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9_+=,.@:/-]{2,1224}")
_MFA_SERIAL = re.compile(r"[A-Za-z0-9_+=/:,.@-]{9,256}")
_METHOD_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_CALLABLE_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", re.ASCII)

MIN_DURATION, MAX_DURATION, MAX_CHAINED_DURATION = 900, 43200, 3600


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


def parse_json_object(name: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise bad(name, raw, 'a JSON object such as {"Key": "value"} (it does not parse)') from None
    if not isinstance(value, dict):
        raise bad(name, raw, 'a JSON object such as {"Key": "value"} (not an object)')
    return value


def parse_role_chain(raw: str) -> tuple[str, ...]:
    # Role names may contain commas themselves: only a comma before "arn:" separates hops.
    arns = tuple(part.strip() for part in re.split(r",(?=\s*arn:)", raw))
    for arn in arns:
        if not _ROLE_ARN.fullmatch(arn):
            raise bad(
                "BRS_ROLE_ARN",
                raw,
                "an IAM role ARN like arn:aws:iam::123456789012:role/NAME (any partition), "
                "or a comma-separated chain of them",
            )
    return arns


@dataclass(frozen=True)
class Settings:
    """Everything the ``BRS_*`` variables say, validated. Build with :func:`from_env`."""

    role_arns: tuple[str, ...] = ()
    role_session_name: str | None = None
    duration_seconds: int | None = None
    defer_refresh: bool = True
    external_id: str | None = field(default=None, repr=False)
    assume_role_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    sts_region: str | None = None
    sts_endpoint_url: str | None = None
    sts_client_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    enabled: bool = True
    log_level: str | None = None
    on_error: str = "raise"
    propagate: bool = True
    advisory_refresh_seconds: int | None = None
    mandatory_refresh_seconds: int | None = None
    cache_dir: str | None = None
    mfa_serial: str | None = None
    mfa_token_command: tuple[str, ...] = ()
    mfa_timeout_seconds: int = 30
    method: str = "sts"
    web_identity_token_file: str | None = None
    custom_method: str | None = None

    @property
    def role_arn(self) -> str | None:
        """The role whose credentials the program gets (the last hop of a chain)."""
        return self.role_arns[-1] if self.role_arns else None

    @property
    def active(self) -> bool:
        """Whether patching should happen at all."""
        return self.enabled and bool(self.role_arns or self.method != "sts")

    def key(self) -> str:
        """A stable string identifying the credentials these settings produce.

        Patched sessions share one credentials object per key; the file cache
        derives its file names from it (hashed, so no secret reaches a file name).
        """
        fields = {
            name: value
            for name, value in self.__dict__.items()
            if name not in {"enabled", "log_level", "on_error", "propagate"}
        }
        return json.dumps(fields, sort_keys=True, default=str)

    def redacted(self) -> dict[str, str]:
        """The non-default settings as printable strings; secrets never shown."""
        shown: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value == item.default or (item.default is MISSING and not value):
                continue
            if item.name == "external_id":
                shown[item.name] = "(set, hidden)"
            elif isinstance(value, Mapping):
                # Values may hold policies or keys: list the keys only.
                shown[item.name] = "keys: " + ", ".join(sorted(value))
            elif isinstance(value, tuple):
                shown[item.name] = " ".join(value) if item.name == "mfa_token_command" else ",".join(value)
            else:
                shown[item.name] = str(value)
        return shown


def _get(env: Mapping[str, str], name: str) -> str | None:
    """An unset and an empty variable mean the same: not given."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate the ``BRS_*`` variables of ``environ`` (default ``os.environ``).

    Raises :class:`ConfigError` with a one-line message for the first bad value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    raw = _get(env, "BRS_ROLE_ARN")
    if raw is not None:
        values["role_arns"] = parse_role_chain(raw)
    raw = _get(env, "BRS_ROLE_SESSION_NAME")
    if raw is not None:
        if not _SESSION_NAME.fullmatch(raw):
            raise bad("BRS_ROLE_SESSION_NAME", raw, "2 to 64 characters of A-Z a-z 0-9 _+=,.@-")
        values["role_session_name"] = raw
    raw = _get(env, "BRS_DURATION_SECONDS")
    if raw is not None:
        values["duration_seconds"] = parse_int(
            "BRS_DURATION_SECONDS", raw, MIN_DURATION, MAX_DURATION, "seconds"
        )
        if len(values.get("role_arns", ())) > 1 and values["duration_seconds"] > MAX_CHAINED_DURATION:
            raise bad(
                "BRS_DURATION_SECONDS",
                raw,
                f"at most {MAX_CHAINED_DURATION} with a role chain (AWS caps chained sessions at 1 h)",
            )
    raw = _get(env, "BRS_EXTERNAL_ID")
    if raw is not None:
        if not _EXTERNAL_ID.fullmatch(raw):
            raise bad("BRS_EXTERNAL_ID", None, "2 to 1224 characters of A-Z a-z 0-9 _+=,.@:/-")
        values["external_id"] = raw
    for name, attr in (
        ("BRS_ASSUME_ROLE_KWARGS", "assume_role_kwargs"),
        ("BRS_STS_CLIENT_KWARGS", "sts_client_kwargs"),
    ):
        raw = _get(env, name)
        if raw is not None:
            values[attr] = parse_json_object(name, raw)
    _check_no_duplicates(values)

    for name, attr in (("BRS_STS_REGION", "sts_region"), ("BRS_STS_ENDPOINT_URL", "sts_endpoint_url")):
        raw = _get(env, name)
        if raw is not None:
            values[attr] = raw.strip()
    if "sts_region" in values and not re.fullmatch(r"[a-z]{2,}(?:-[a-z0-9]+)+", values["sts_region"]):
        raise bad("BRS_STS_REGION", values["sts_region"], "an AWS region name such as us-east-1")
    url = values.get("sts_endpoint_url")
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", url):
        raise bad("BRS_STS_ENDPOINT_URL", url, "an http:// or https:// URL")

    for name, attr in (
        ("BRS_ENABLED", "enabled"),
        ("BRS_DEFER_REFRESH", "defer_refresh"),
        ("BRS_PROPAGATE", "propagate"),
    ):
        raw = _get(env, name)
        if raw is not None:
            values[attr] = parse_bool(name, raw)

    raw = _get(env, "BRS_LOG_LEVEL")
    if raw is not None:
        if raw.strip().upper() not in LOG_LEVELS:
            raise bad("BRS_LOG_LEVEL", raw, "one of " + ", ".join(LOG_LEVELS) + " (any case)")
        values["log_level"] = raw.strip().upper()
    raw = _get(env, "BRS_ON_ERROR")
    if raw is not None:
        if raw.strip().lower() not in ("raise", "warn"):
            raise bad("BRS_ON_ERROR", raw, "raise or warn")
        values["on_error"] = raw.strip().lower()

    _parse_windows(env, values)
    raw = _get(env, "BRS_CACHE_DIR")
    if raw is not None:
        values["cache_dir"] = os.path.abspath(os.path.expanduser(raw.strip()))
    _parse_mfa(env, values)
    _parse_method(env, values)
    return Settings(**values)


def _check_no_duplicates(values: dict[str, Any]) -> None:
    # A parameter given both by its own variable and inside the JSON would leave the
    # reader guessing which one wins: refuse it.
    extra = values.get("assume_role_kwargs", {})
    for key, own in (
        ("RoleArn", "BRS_ROLE_ARN"),
        ("RoleSessionName", "BRS_ROLE_SESSION_NAME"),
        ("DurationSeconds", "BRS_DURATION_SECONDS"),
        ("ExternalId", "BRS_EXTERNAL_ID"),
        ("SerialNumber", "BRS_MFA_SERIAL"),
        ("TokenCode", "BRS_MFA_TOKEN_COMMAND"),
    ):
        if key in extra:
            raise bad("BRS_ASSUME_ROLE_KWARGS", None, f"no {key!r} key (set {own} instead)")


def _parse_windows(env: Mapping[str, str], values: dict[str, Any]) -> None:
    limit = values.get("duration_seconds") or MAX_DURATION
    for name, attr in (
        ("BRS_ADVISORY_REFRESH_SECONDS", "advisory_refresh_seconds"),
        ("BRS_MANDATORY_REFRESH_SECONDS", "mandatory_refresh_seconds"),
    ):
        raw = _get(env, name)
        if raw is not None:
            values[attr] = parse_int(name, raw, 1, limit - 1, "seconds, below the lifetime,")
    advisory = values.get("advisory_refresh_seconds")
    mandatory = values.get("mandatory_refresh_seconds")
    if advisory is not None and mandatory is not None and not mandatory < advisory:
        raise bad(
            "BRS_MANDATORY_REFRESH_SECONDS",
            str(mandatory),
            f"fewer seconds than BRS_ADVISORY_REFRESH_SECONDS={advisory} (0 < mandatory < advisory)",
        )


def _parse_mfa(env: Mapping[str, str], values: dict[str, Any]) -> None:
    serial = _get(env, "BRS_MFA_SERIAL")
    command = _get(env, "BRS_MFA_TOKEN_COMMAND")
    if serial is not None:
        if not _MFA_SERIAL.fullmatch(serial.strip()):
            raise bad("BRS_MFA_SERIAL", serial, "an MFA device ARN or serial number (9-256 chars)")
        values["mfa_serial"] = serial.strip()
    if command is not None:
        try:
            argv = tuple(shlex.split(command))
        except ValueError:
            raise bad("BRS_MFA_TOKEN_COMMAND", command, "a command line with balanced quotes") from None
        values["mfa_token_command"] = argv
    if serial is not None and command is None:
        raise bad("BRS_MFA_TOKEN_COMMAND", None, "a command when BRS_MFA_SERIAL is set")
    if command is not None and serial is None:
        raise bad("BRS_MFA_SERIAL", None, "an MFA serial when BRS_MFA_TOKEN_COMMAND is set")
    raw = _get(env, "BRS_MFA_TIMEOUT_SECONDS")
    if raw is not None:
        values["mfa_timeout_seconds"] = parse_int("BRS_MFA_TIMEOUT_SECONDS", raw, 1, 600, "seconds")


def _parse_method(env: Mapping[str, str], values: dict[str, Any]) -> None:
    raw = _get(env, "BRS_METHOD")
    method = "sts" if raw is None else raw.strip().lower()
    if not _METHOD_NAME.fullmatch(method):
        raise bad("BRS_METHOD", raw, "a method name: " + ", ".join(BUILTIN_METHODS) + " or a plugin")
    values["method"] = method
    token_file = _get(env, "BRS_WEB_IDENTITY_TOKEN_FILE")
    if token_file is not None:
        values["web_identity_token_file"] = os.path.abspath(os.path.expanduser(token_file.strip()))
    custom = _get(env, "BRS_CUSTOM_METHOD")
    if custom is not None:
        if not _CALLABLE_PATH.fullmatch(custom.strip()):
            raise bad("BRS_CUSTOM_METHOD", custom, "package.module:callable")
        values["custom_method"] = custom.strip()
    if method == "web-identity":
        if token_file is None:
            raise bad("BRS_WEB_IDENTITY_TOKEN_FILE", None, "a token file path when BRS_METHOD=web-identity")
        if len(values.get("role_arns", ())) != 1:
            raise bad("BRS_ROLE_ARN", None, "a single role with BRS_METHOD=web-identity")
        # AssumeRoleWithWebIdentity has no ExternalId, MFA, tags...: refuse them rather
        # than assume the role without the conditions the caller asked for.
        extra = sorted(set(values.get("assume_role_kwargs", {})) - {"Policy", "PolicyArns"})
        for name, given in (
            ("BRS_EXTERNAL_ID", "external_id" in values),
            ("BRS_MFA_SERIAL", "mfa_serial" in values),
            ("BRS_ASSUME_ROLE_KWARGS", bool(extra)),
        ):
            if given:
                raise bad(
                    name,
                    None,
                    "nothing with BRS_METHOD=web-identity (only Policy and "
                    "PolicyArns in BRS_ASSUME_ROLE_KWARGS)",
                )
    if method == "custom" and custom is None:
        raise bad("BRS_CUSTOM_METHOD", None, "package.module:callable when BRS_METHOD=custom")
    if method == "custom" and not values.get("role_arns"):
        # AssumeRole parameters with no AssumeRole to carry them: refuse, never drop.
        for name, attr in (
            ("BRS_EXTERNAL_ID", "external_id"),
            ("BRS_MFA_SERIAL", "mfa_serial"),
            ("BRS_ASSUME_ROLE_KWARGS", "assume_role_kwargs"),
        ):
            if values.get(attr):
                raise bad(name, None, "BRS_ROLE_ARN as well: with BRS_METHOD=custom it applies to that role")
