"""The explicit API: ``RefreshableSession``, a boto3.Session that assumes a role."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from . import build as factory
from . import plan
from .config.arguments import CHECKS, bad_argument
from .config.arguments import role_arn as check_role_arn
from .config.botocore_checks import validate_sts_params
from .config.settings import Settings
from .credentials import presign, sources
from .credentials.engine import RoleCredentials
from .credentials.mfa import TokenProvider
from .errors import ConfigError

# boto3.Session keywords that choose the *source* credentials, not the session's own.
_SOURCE_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")


class RefreshableSession(boto3.Session):
    """A ``boto3.Session`` whose credentials are refreshing AssumeRole credentials.

    ``assume_role_kwargs`` are STS AssumeRole parameters (``RoleArn`` required),
    checked against botocore's STS model. ``sts_client_kwargs`` go to the STS client
    that assumes the role; that client is built lazily from the *source* credentials
    (explicit keys or ``profile_name`` given here, else the default chain) and is
    never handed out: ``session.client("sts")`` signs with the role.

    ``defer_refresh=True`` fetches on first use; ``False`` fetches now (raising at
    once on failure) and keeps credentials fresh from a background thread.
    """

    def __init__(
        self,
        assume_role_kwargs: Mapping[str, Any],
        sts_client_kwargs: Mapping[str, Any] | None = None,
        defer_refresh: bool = True,
        *,
        advisory_refresh_seconds: int | None = None,
        mandatory_refresh_seconds: int | None = None,
        mfa_token_provider: TokenProvider | None = None,
        cache_dir: str | None = None,
        **session_kwargs: Any,
    ) -> None:
        settings = _settings(
            assume_role_kwargs,
            sts_client_kwargs or {},
            defer_refresh,
            advisory=advisory_refresh_seconds,
            mandatory=mandatory_refresh_seconds,
            cache_dir=cache_dir,
            mfa=mfa_token_provider is not None,
        )
        source_keys = {k: session_kwargs.pop(k) for k in _SOURCE_KEYS if k in session_kwargs}
        profile = session_kwargs.get("profile_name")
        super().__init__(**session_kwargs)
        self._brs_settings = settings
        self._brs_credentials: RoleCredentials = factory.build(
            settings,
            source=lambda: sources.plain_session(profile, **source_keys),
            mfa_token_provider=mfa_token_provider,
            origin=plan.ARGUMENTS,  # errors name the arguments, not BRS_* variables
        )
        sources.use_credentials(self._session, self._brs_credentials)
        presign.register(self._session)

    @property
    def role_arn(self) -> str:
        return self._brs_settings.role_arns[-1]

    @property
    def refreshable_credentials(self) -> RoleCredentials:
        """The credentials object (its ``stats``, ``windows``, ``expiry_time``)."""
        return self._brs_credentials

    def __repr__(self) -> str:
        return (
            f"RefreshableSession(role_arn={self.role_arn!r}, "
            f"role_session_name={self._brs_settings.role_session_name or factory.default_session_name()!r}, "
            f"region_name={self.region_name!r})"
        )


def _settings(
    assume_role_kwargs: Mapping[str, Any],
    sts_client_kwargs: Mapping[str, Any],
    defer_refresh: bool,
    *,
    advisory: int | None,
    mandatory: int | None,
    cache_dir: str | None,
    mfa: bool,
) -> Settings:
    """The arguments, checked now; every error names the argument (or its key)."""
    if not isinstance(assume_role_kwargs, Mapping):
        raise bad_argument("assume_role_kwargs", assume_role_kwargs, "a dict of AssumeRole parameters")
    if not isinstance(sts_client_kwargs, Mapping):
        raise bad_argument("sts_client_kwargs", sts_client_kwargs, "a dict of create_client('sts') keywords")
    extra = dict(assume_role_kwargs)
    if "TokenCode" in extra:
        raise ConfigError(
            "assume_role_kwargs key 'TokenCode' is not accepted: an MFA code works once; "
            "pass mfa_token_provider=callable instead"
        )
    # Unknown keys first (a mistyped key explains a "missing key" better than the other
    # way round), then the missing role, then types against botocore's model with the
    # required keys filled in.
    keys = {k: extra[k] for k in extra if k not in ("RoleArn", "RoleSessionName")}
    validate_sts_params({"RoleArn": _PROBE_ARN, "RoleSessionName": "probe", **keys}, "assume_role_kwargs")
    role_arn = extra.pop("RoleArn", None)
    if role_arn is None:
        raise ConfigError("assume_role_kwargs is missing required key 'RoleArn'")
    validate_sts_params({"RoleSessionName": "probe", **extra, "RoleArn": role_arn}, "assume_role_kwargs")
    # Then the keys with rules of their own, checked as the matching Settings fields are.
    key = "assume_role_kwargs['{}']".format
    role_arn = check_role_arn(key("RoleArn"), role_arn)
    session_name = _check(key("RoleSessionName"), "role_session_name", extra.pop("RoleSessionName", None))
    duration = _check(key("DurationSeconds"), "duration_seconds", extra.pop("DurationSeconds", None))
    external_id = _check(key("ExternalId"), "external_id", extra.pop("ExternalId", None))
    serial = _check(key("SerialNumber"), "mfa_serial", extra.pop("SerialNumber", None))
    if mfa and not serial:
        raise ConfigError("assume_role_kwargs is missing 'SerialNumber', needed with mfa_token_provider")
    if serial and not mfa:
        raise ConfigError("mfa_token_provider is required when assume_role_kwargs has 'SerialNumber'")
    for name, value in (("advisory_refresh_seconds", advisory), ("mandatory_refresh_seconds", mandatory)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{name}={value!r} is not valid: expected a positive integer")
    if advisory is not None and mandatory is not None and not mandatory < advisory:
        raise ConfigError(
            f"mandatory_refresh_seconds={mandatory} is not valid: expected fewer seconds than "
            f"advisory_refresh_seconds={advisory}"
        )
    if not isinstance(defer_refresh, bool):
        raise bad_argument("defer_refresh", defer_refresh, "True or False")
    return Settings(
        role_arns=(role_arn,),
        role_session_name=session_name,
        duration_seconds=duration,
        defer_refresh=defer_refresh,
        external_id=external_id,
        assume_role_kwargs=extra,
        sts_client_kwargs=dict(sts_client_kwargs),
        advisory_refresh_seconds=advisory,
        mandatory_refresh_seconds=mandatory,
        cache_dir=_check("cache_dir", "cache_dir", cache_dir),
        mfa_serial=serial,
        # Later checks (the factory's, against botocore's STS model) name these.
        origin=_ORIGIN,
    )


# A syntactically valid ARN that fills the required key while checking the others.
_PROBE_ARN = "arn:aws:iam::123456789012:role/probe"
_ORIGIN = {
    "assume_role_kwargs": "assume_role_kwargs",
    "sts_client_kwargs": "sts_client_kwargs",
    "role_arns": "assume_role_kwargs['RoleArn']",
    "mfa_serial": "assume_role_kwargs['SerialNumber']",
    "cache_dir": "cache_dir",
}


def _check(name: str, field: str, value: Any) -> Any:
    """The Settings field's own check, its error naming ``name``."""
    return None if value is None else CHECKS[field](name, value)
