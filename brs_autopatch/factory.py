"""Settings -> RoleCredentials: the method, the role chain, the STS client, the cache.

Both ways in end here: the autopatch (settings from the environment) and the
explicit :class:`~brs_autopatch.RefreshableSession` (settings from its arguments).
"""

from __future__ import annotations

import functools
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.config import Config

from . import methods, sources
from .cache import FileCache
from .credentials import RoleCredentials
from .errors import ConfigError
from .mfa import OneUse, TokenProvider, command_provider
from .settings import Settings
from .validation import sts_client_kwargs, validate_sts_params

# When nothing names a region, an STS client still needs one: the partition's home.
_PARTITION_REGION = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}
# STS calls happen on the request path of a refresh: fail fast instead of botocore's
# 60 s timeouts and 5 legacy retries; our own backoff retries across requests.
_DEFAULT_STS_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"mode": "standard", "total_max_attempts": 2}
)


def default_session_name() -> str:
    """``brs-autopatch.<host>``: meaningful in CloudTrail, valid as a RoleSessionName."""
    host = re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", socket.gethostname())
    return f"brs-autopatch.{host}"[:64]


def build(
    settings: Settings,
    *,
    source: Callable[[], botocore.session.Session] = sources.plain_session,
    mfa_token_provider: TokenProvider | None = None,
    clock: Callable[[], float] = time.time,
) -> RoleCredentials:
    """Build (but do not fetch, unless ``defer_refresh`` is off) the credentials.

    ``clock`` is for simulations (tests, bench): every refresh decision uses it.
    """
    method = methods.load(settings.method)
    client_kwargs = _client_kwargs(settings, source)
    cache = FileCache(settings.cache_dir) if settings.cache_dir else None
    if mfa_token_provider is None and settings.mfa_token_command:
        mfa_token_provider = command_provider(settings.mfa_token_command, settings.mfa_timeout_seconds)
    mfa = OneUse(mfa_token_provider) if mfa_token_provider is not None else None

    hops: list[str | None] = list(settings.role_arns)
    first_method = method
    if settings.method == "sts":
        first_method = methods.assume_role_method
    elif settings.method != "web-identity":
        hops.insert(0, None)  # a plugin's own credentials come first, roles are assumed on top
    if not hops:
        raise ConfigError(f"{settings.name_of('role_arns')} is not set: expected the role to assume")

    # The caller's AssumeRole conditions (BRS_ASSUME_ROLE_KWARGS, ExternalId, MFA) go with
    # the first role assumed: after a plugin's own credentials, that is the second hop.
    first_role = 1 if hops[0] is None and len(hops) > 1 else 0
    credentials: RoleCredentials | None = None
    for index, role_arn in enumerate(hops):
        params = _params(settings, role_arn, first=index == first_role, mfa=mfa is not None)
        previous = credentials
        hop_source = source if previous is None else functools.partial(sources.session_with, previous)
        context = methods.MethodContext(
            settings=settings,
            role_arn=role_arn,
            params=params,
            sts_client_kwargs=client_kwargs,
            source=hop_source,
            mfa_token_provider=mfa if index == first_role else None,
        )
        hop_method = first_method if index == 0 else methods.assume_role_method
        credentials = RoleCredentials(
            functools.partial(methods.make_fetcher, hop_method, context),
            label=role_arn or f"method {settings.method}",
            defer_refresh=settings.defer_refresh,
            advisory_refresh_seconds=settings.advisory_refresh_seconds,
            mandatory_refresh_seconds=settings.mandatory_refresh_seconds,
            cache=cache,
            cache_key=FileCache.key_for(settings.key(), str(index)) if cache else None,
            clock=clock,
        )
    assert credentials is not None
    return credentials


def _params(settings: Settings, role_arn: str | None, *, first: bool, mfa: bool) -> dict[str, Any]:
    if role_arn is None:
        return {}
    params: dict[str, Any] = dict(settings.assume_role_kwargs) if first else {}
    params["RoleArn"] = role_arn
    params["RoleSessionName"] = settings.role_session_name or default_session_name()
    if settings.duration_seconds is not None:
        params["DurationSeconds"] = settings.duration_seconds
    if first and settings.external_id is not None:
        params["ExternalId"] = settings.external_id
    if first and mfa:
        if not settings.mfa_serial:
            name = settings.name_of("mfa_serial")
            raise ConfigError(f"{name} is not set: expected the MFA device serial or ARN")
        params["SerialNumber"] = settings.mfa_serial
    # The model check runs here, where botocore is loaded anyway, not at import time.
    check = dict(params, TokenCode="000000") if first and mfa else params
    # Errors name what the user wrote: the variable, or the Python argument (settings.origin).
    validate_sts_params(check, settings.name_of("assume_role_kwargs" if first else "role_arns"))
    return params


def _client_kwargs(settings: Settings, source: Callable[[], botocore.session.Session]) -> dict[str, Any]:
    kwargs = sts_client_kwargs(settings.sts_client_kwargs, settings.name_of("sts_client_kwargs"))
    if settings.sts_region and "region_name" not in kwargs:
        kwargs["region_name"] = settings.sts_region
    if settings.sts_endpoint_url and "endpoint_url" not in kwargs:
        kwargs["endpoint_url"] = settings.sts_endpoint_url
    if "region_name" not in kwargs:
        # Same lookup botocore does (env, config file), without loading credentials.
        configured = source().get_config_variable("region")
        partition = (settings.role_arn or "arn:aws").split(":")[1]
        kwargs["region_name"] = configured or _PARTITION_REGION.get(partition, "us-east-1")
    config = kwargs.get("config")
    kwargs["config"] = _DEFAULT_STS_CONFIG.merge(config) if config else _DEFAULT_STS_CONFIG
    return kwargs
