"""Settings -> RoleCredentials: the method, the role chain, the STS client, the cache.

Both ways in end here: the autopatch (settings from the environment) and the
explicit :class:`~brs_autopatch.RefreshableSession` (settings from its arguments).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import botocore.session

from . import methods, plan
from .config.settings import Settings
from .credentials import presign, sources
from .credentials.cache import FileCache
from .credentials.engine import RoleCredentials
from .credentials.mfa import OneUse, TokenProvider, command_provider
from .errors import ConfigError
from .plan import Plan, default_session_name

__all__ = ["build", "build_from_plan", "client_kwargs", "default_session_name", "partition_region"]


def build(
    settings: Settings,
    *,
    source: Callable[[], botocore.session.Session] = sources.plain_session,
    mfa_token_provider: TokenProvider | None = None,
    clock: Callable[[], float] = time.time,
    origin: plan.Origin = plan.ENVIRONMENT,
    start: bool = True,
) -> RoleCredentials:
    """Check the settings (:func:`brs_autopatch.plan.make`), then :func:`build_from_plan`.

    ``origin`` names what errors blame: BRS_* variables, or the explicit API's arguments.
    """
    mfa = mfa_token_provider is not None or bool(settings.mfa_token_command)
    checked = plan.make(settings, origin=origin, mfa=mfa)
    return build_from_plan(
        checked, source=source, mfa_token_provider=mfa_token_provider, clock=clock, start=start
    )


def build_from_plan(
    checked: Plan,
    *,
    source: Callable[[], botocore.session.Session] = sources.plain_session,
    mfa_token_provider: TokenProvider | None = None,
    clock: Callable[[], float] = time.time,
    start: bool = True,
) -> RoleCredentials:
    """Build the credentials of a plan; with ``start`` and ``defer_refresh`` off, fetch them.

    Checks nothing: the plan did. ``start=False`` builds without any network I/O; call
    ``credentials.start()`` later (the installation does, outside its lock). ``clock``
    is for simulations (tests, bench): every refresh decision uses it.
    """
    settings = checked.settings
    if settings.source_profile is not None and source is sources.plain_session:
        # BRS_PROFILE: the role profile's source_profile supplies the credentials that call STS.
        source = functools.partial(sources.plain_session, settings.source_profile)
    kwargs = client_kwargs(checked, source)
    cache = FileCache(checked.cache_dir) if checked.cache_dir else None
    if mfa_token_provider is None and settings.mfa_token_command:
        mfa_token_provider = command_provider(settings.mfa_token_command, settings.mfa_timeout_seconds)
    mfa = OneUse(mfa_token_provider) if mfa_token_provider is not None else None
    if checked.mfa != (mfa is not None):  # a caller's mistake, not a setting's
        raise ConfigError("mfa_token_provider is not valid: the plan was made with a different MFA setting")

    credentials: RoleCredentials | None = None
    for index, hop in enumerate(checked.hops):
        previous = credentials
        hop_source = source if previous is None else functools.partial(sources.session_with, previous)
        context = methods.MethodContext(
            settings=settings,
            role_arn=hop.role_arn,
            params=hop.params,
            sts_client_kwargs=kwargs,
            source=hop_source,
            mfa_token_provider=mfa if hop.mfa else None,
        )
        credentials = RoleCredentials(
            functools.partial(methods.make_fetcher, hop.method, context),
            label=hop.role_arn or f"method {settings.method}",
            defer_refresh=settings.defer_refresh,
            advisory_refresh_seconds=settings.advisory_refresh_seconds,
            mandatory_refresh_seconds=settings.mandatory_refresh_seconds,
            cache=cache,
            cache_key=FileCache.key_for(settings.key(), str(index)) if cache else None,
            clock=clock,
            previous=previous,
        )
    assert credentials is not None
    credentials.presign_advice = presign.advice(settings, chained=len(checked.hops) > 1)
    if start:
        credentials.start()
    return credentials


def client_kwargs(checked: Plan, source: Callable[[], botocore.session.Session]) -> dict[str, Any]:
    """The plan's STS client keywords, with a region even when nothing names one."""
    kwargs = dict(checked.sts_client_kwargs)
    if "region_name" not in kwargs:
        # Same lookup botocore does (env, config file), without loading credentials.
        configured = source().get_config_variable("region")
        partition = (checked.settings.role_arn or "arn:aws").split(":")[1]
        kwargs["region_name"] = configured or partition_region(partition)
    return kwargs


def partition_region(partition: str) -> str:
    """The region an STS client of ``partition`` uses when nothing names one."""
    known = plan.PARTITION_REGION.get(partition)
    if known is not None:
        return known
    # Another partition (aws-iso, aws-iso-b, ...): one of its own STS regions, never a
    # region of another partition, whose STS would not answer for it.
    regions = botocore.session.Session().get_available_regions("sts", partition_name=partition)
    return regions[0] if regions else "us-east-1"
