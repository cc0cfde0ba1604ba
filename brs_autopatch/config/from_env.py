"""Reading the environment: ``BRS_*`` variables -> one validated :class:`Settings`.

Every ``BRS_*`` variable is read here (with the parsers of
:mod:`brs_autopatch.config.variables`) and nowhere else. Parsing is pure (no boto3,
no botocore), so it can run at ``import brs_autopatch`` and in the ``brs-run``
launcher before the program starts. Checks that need botocore or the program's own
modules (the STS model, botocore Config values, methods, the cache directory) are
:mod:`brs_autopatch.plan`'s, run as soon as botocore is imported.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from typing import Any

from .settings import Settings
from .variables import (
    _CALLABLE_PATH,
    _EXTERNAL_ID,
    _METHOD_NAME,
    _MFA_SERIAL,
    _SESSION_NAME,
    BUILTIN_METHODS,
    ENDPOINT_URL_FORM,
    LOG_LEVELS,
    MAX_CHAINED_DURATION,
    MAX_DURATION,
    MIN_DURATION,
    SESSION_NAME_FORM,
    bad,
    endpoint_url_problem,
    parse_bool,
    parse_int,
    parse_json_object,
    parse_role_chain,
)
from .variables import read as _get


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate the ``BRS_*`` variables of ``environ`` (default ``os.environ``).

    Raises :class:`ConfigError` with a one-line message for the first bad value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    raw = _get(env, "BRS_ROLE_ARN")
    if raw is not None:
        values["role_arns"] = parse_role_chain(raw)
    raw = _get(env, "BRS_SERVED_ROLE_ARN")
    if raw is not None:
        values["served_role_arns"] = parse_role_chain(raw, "BRS_SERVED_ROLE_ARN")
    raw = _get(env, "BRS_ROLE_SESSION_NAME")
    if raw is not None:
        if not _SESSION_NAME.fullmatch(raw):
            raise bad("BRS_ROLE_SESSION_NAME", raw, SESSION_NAME_FORM)
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
    problem = None if url is None else endpoint_url_problem(url)
    if problem is not None:
        raise bad("BRS_STS_ENDPOINT_URL", url, f"{ENDPOINT_URL_FORM} ({problem})")

    for name, attr in (
        ("BRS_ENABLED", "enabled"),
        ("BRS_DEFER_REFRESH", "defer_refresh"),
        ("BRS_PROPAGATE", "propagate"),
        ("BRS_ADOPT_OWN_KEYS", "adopt_own_keys"),
        ("BRS_SERVE", "serve"),
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
    raw = _get(env, "BRS_PROFILE")
    if raw is not None:
        if not re.fullmatch(r"[\w.@+=,:/-]{1,128}", raw.strip()):
            raise bad("BRS_PROFILE", raw, "the name of a profile in the AWS config file")
        values["profile"] = raw.strip()
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
    if command is not None and serial is None and "profile" not in values:
        # With BRS_PROFILE the profile's mfa_serial may supply it (the plan checks then).
        raise bad("BRS_MFA_SERIAL", None, "an MFA serial when BRS_MFA_TOKEN_COMMAND is set")
    raw = _get(env, "BRS_MFA_TIMEOUT_SECONDS")
    if raw is not None:
        values["mfa_timeout_seconds"] = parse_int("BRS_MFA_TIMEOUT_SECONDS", raw, 1, 600, "seconds")


def _parse_method(env: Mapping[str, str], values: dict[str, Any]) -> None:
    raw = _get(env, "BRS_METHOD")
    method = "sts" if raw is None else raw.strip().lower()
    if method not in BUILTIN_METHODS and not _METHOD_NAME.fullmatch(method):
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
