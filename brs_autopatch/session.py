"""The explicit API: ``RefreshableSession``, a boto3.Session that assumes a role."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from . import factory, plan, sources
from .credentials import RoleCredentials
from .errors import ConfigError
from .mfa import TokenProvider
from .settings import MIN_DURATION, Settings

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
    if not isinstance(assume_role_kwargs, Mapping):
        raise ConfigError("assume_role_kwargs is not valid: expected a mapping of AssumeRole parameters")
    extra = dict(assume_role_kwargs)
    role_arn = extra.pop("RoleArn", None)
    if not isinstance(role_arn, str) or not role_arn:
        raise ConfigError("assume_role_kwargs is missing required key 'RoleArn'")
    if "TokenCode" in extra:
        raise ConfigError(
            "assume_role_kwargs key 'TokenCode' is not accepted: an MFA code works once; "
            "pass mfa_token_provider=callable instead"
        )
    serial = extra.pop("SerialNumber", None)
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
    duration = extra.pop("DurationSeconds", None)
    if duration is not None and (not isinstance(duration, int) or duration < MIN_DURATION):
        raise ConfigError(f"DurationSeconds={duration!r} is not valid: expected an integer of at least 900")
    return Settings(
        role_arns=(role_arn,),
        role_session_name=extra.pop("RoleSessionName", None),
        duration_seconds=duration,
        defer_refresh=bool(defer_refresh),
        external_id=extra.pop("ExternalId", None),
        assume_role_kwargs=extra,
        sts_client_kwargs=dict(sts_client_kwargs),
        advisory_refresh_seconds=advisory,
        mandatory_refresh_seconds=mandatory,
        cache_dir=cache_dir,
        mfa_serial=serial,
    )
