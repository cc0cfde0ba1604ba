"""Environment variables -> one validated, frozen :class:`Settings`.

Every ``BRS_*`` variable is read here (with the parsers of
:mod:`brs_autopatch.config.variables`) and nowhere else. Parsing is pure (no boto3,
no botocore), so it can run at ``import brs_autopatch`` and in the ``brs-run``
launcher before the program starts. Checks that need botocore or the program's own
modules (the STS model, botocore Config values, methods, the cache directory) are
:mod:`brs_autopatch.plan`'s, run as soon as botocore is imported.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from typing import Any, ClassVar

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
    VARIABLES,
    bad,
    endpoint_url_problem,
    parse_bool,
    parse_int,
    parse_json_object,
    parse_role_chain,
)
from .variables import read as _get

# Re-exported for the launcher, methods and tests, which know them as settings.*.
__all__ = ["BUILTIN_METHODS", "FIELDS", "MIN_DURATION", "VARIABLES", "Settings", "from_env", "parse_bool"]


# Settings field -> the variable it is read from (BRS_ + the field's name, but for these).
VARIABLE_OF: dict[str, str] = {"role_arns": "BRS_ROLE_ARN"}


# Fields that do not change which credentials the settings produce.
_NOT_IN_KEY = frozenset(
    {"enabled", "log_level", "on_error", "propagate", "adopt_own_keys", "serve", "origin"}
)


class Settings:
    """Everything the ``BRS_*`` variables say, validated. Build with :func:`from_env`.

    Immutable; ``settings.replace(field=value)`` makes a changed copy. A plain class with
    ``__slots__``, not a frozen dataclass: this module loads in botocore's import hook of
    every process under brs-run, where generating a 27-field dataclass cost about 4 ms.
    The keyword arguments of ``__init__`` are the fields (:data:`FIELDS`).
    """

    #: The field names, in order (set below, from ``__init__``'s keywords).
    FIELDS: ClassVar[tuple[str, ...]]

    __slots__ = (
        "adopt_own_keys",
        "advisory_refresh_seconds",
        "assume_role_kwargs",
        "cache_dir",
        "custom_method",
        "defer_refresh",
        "duration_seconds",
        "enabled",
        "external_id",
        "log_level",
        "mandatory_refresh_seconds",
        "method",
        "mfa_serial",
        "mfa_timeout_seconds",
        "mfa_token_command",
        "on_error",
        "origin",
        "profile",
        "propagate",
        "role_arns",
        "role_session_name",
        "serve",
        "served_role_arns",
        "source_profile",
        "sts_client_kwargs",
        "sts_endpoint_url",
        "sts_region",
        "web_identity_token_file",
    )

    role_arns: tuple[str, ...]
    role_session_name: str | None
    duration_seconds: int | None
    defer_refresh: bool
    external_id: str | None
    assume_role_kwargs: Mapping[str, Any]
    sts_region: str | None
    sts_endpoint_url: str | None
    sts_client_kwargs: Mapping[str, Any]
    enabled: bool
    log_level: str | None
    on_error: str
    propagate: bool
    advisory_refresh_seconds: int | None
    mandatory_refresh_seconds: int | None
    cache_dir: str | None
    mfa_serial: str | None
    mfa_token_command: tuple[str, ...]  # may hold a TOTP seed
    mfa_timeout_seconds: int
    method: str
    web_identity_token_file: str | None
    custom_method: str | None
    # An AWS config profile to take the role from (resolved when botocore is loaded).
    profile: str | None
    # The profile whose credentials call STS (a profile's source_profile).
    source_profile: str | None
    adopt_own_keys: bool
    serve: bool  # brs-run --serve (brs_autopatch.serve.start); no effect on the credentials
    # Inside a brs-run --serve tree: the role chain its server assumes (BRS_SERVED_ROLE_ARN,
    # set by brs-run). Another role asked for there is chained from it (brs_autopatch.config.nested).
    served_role_arns: tuple[str, ...]
    # Field -> what the user wrote for it, when that was not a BRS_* variable (a Python
    # argument: "assume_role_kwargs", "role_arns"...). Error messages use name_of().
    origin: Mapping[str, str]

    def __init__(
        self,
        *,
        role_arns: tuple[str, ...] = (),
        role_session_name: str | None = None,
        duration_seconds: int | None = None,
        defer_refresh: bool = True,
        external_id: str | None = None,
        assume_role_kwargs: Mapping[str, Any] | None = None,
        sts_region: str | None = None,
        sts_endpoint_url: str | None = None,
        sts_client_kwargs: Mapping[str, Any] | None = None,
        enabled: bool = True,
        log_level: str | None = None,
        on_error: str = "raise",
        propagate: bool = True,
        advisory_refresh_seconds: int | None = None,
        mandatory_refresh_seconds: int | None = None,
        cache_dir: str | None = None,
        mfa_serial: str | None = None,
        mfa_token_command: tuple[str, ...] = (),
        mfa_timeout_seconds: int = 30,
        method: str = "sts",
        web_identity_token_file: str | None = None,
        custom_method: str | None = None,
        profile: str | None = None,
        source_profile: str | None = None,
        adopt_own_keys: bool = True,
        serve: bool = False,
        served_role_arns: tuple[str, ...] = (),
        origin: Mapping[str, str] | None = None,
    ) -> None:
        values = dict(locals())
        del values["self"]
        # The mappings default to a new empty dict each, as a dataclass default_factory would.
        for name in ("assume_role_kwargs", "sts_client_kwargs", "origin"):
            if values[name] is None:
                values[name] = {}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Settings are immutable: use settings.replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Settings are immutable")

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (field=value) applied; TypeError for an unknown field."""
        return Settings(**{**self.as_dict(), **changes})

    __replace__ = replace  # copy.replace(settings, ...) on Python 3.13+

    def as_dict(self) -> dict[str, Any]:
        """Field -> value, every field."""
        return {name: getattr(self, name) for name in FIELDS}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED)

    def __hash__(self) -> int:
        return hash(self.key())  # equal settings have equal keys

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS if name not in _HIDDEN)
        return f"Settings({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        # __setattr__ refuses, so pickle and copy rebuild through __init__.
        return (_rebuild, (self.as_dict(),))

    def name_of(self, field_name: str) -> str:
        """The name to show in an error about ``field_name``: the argument, else the variable."""
        return self.origin.get(field_name) or VARIABLE_OF.get(field_name, "BRS_" + field_name.upper())

    @property
    def role_arn(self) -> str | None:
        """The role whose credentials the program gets (the last hop of a chain)."""
        return self.role_arns[-1] if self.role_arns else None

    @property
    def active(self) -> bool:
        """Whether patching should happen at all."""
        return self.enabled and bool(self.role_arns or self.profile or self.method != "sts")

    def key(self) -> str:
        """A stable string identifying the credentials these settings produce.

        Patched sessions share one credentials object per key; the file cache
        derives its file names from it (hashed, so no secret reaches a file name).
        """
        chosen = {name: getattr(self, name) for name in FIELDS if name not in _NOT_IN_KEY}
        return json.dumps(chosen, sort_keys=True, default=_jsonable)

    def redacted(self) -> dict[str, str]:
        """The non-default settings as printable strings; secrets never shown."""
        shown: dict[str, str] = {}
        for name in FIELDS:
            if name == "origin":
                continue
            value = getattr(self, name)
            default = _DEFAULTS[name]
            if value == default or (default is None and isinstance(value, Mapping) and not value):
                continue
            if name in ("external_id", "mfa_token_command"):
                shown[name] = "(set, hidden)"
            elif isinstance(value, Mapping):
                # Values may hold policies or keys: list the keys only.
                shown[name] = "keys: " + ", ".join(sorted(value))
            elif isinstance(value, tuple):
                shown[name] = ",".join(value)
            else:
                shown[name] = str(value)
        return shown


# The fields, in order, and their defaults: the keyword arguments of Settings.__init__.
_DEFAULTS: dict[str, Any] = dict(Settings.__init__.__kwdefaults__ or {})
FIELDS: tuple[str, ...] = tuple(_DEFAULTS)
# Public: users read the fields from the class (``Settings.FIELDS``), whatever module holds it.
Settings.FIELDS = FIELDS
# Not in the repr: secrets, or values that may hold them (policies, keys).
_HIDDEN = frozenset({"external_id", "assume_role_kwargs", "sts_client_kwargs", "mfa_token_command", "origin"})
# Equality ignores where a value came from.
_COMPARED = tuple(name for name in FIELDS if name != "origin")


def _rebuild(values: dict[str, Any]) -> Settings:
    return Settings(**values)


def _jsonable(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else str(value)


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
