"""The validation plan: every check of the settings, done before anything is built.

:func:`make` turns :class:`~brs_autopatch.config.settings.Settings` into a frozen
:class:`Plan` — the resolved credential method, the STS parameters of every hop, the
STS client keywords with a real botocore ``Config``, the cache directory — or raises
the one-line :class:`~brs_autopatch.errors.ConfigError` for the first bad value.
It has no side effects: no STS call, no client, no thread, nothing created on disk.
:func:`brs_autopatch.build.build_from_plan` builds from a plan and never checks
again, so a bad setting cannot surface later, at the first request.

Who runs it: ``install()`` as soon as botocore is imported (at once if it already
is), ``brs-run --check``, the explicit API through ``factory.build``; the ``brs-run``
launcher runs :func:`check`, the same steps without the program's own code.

This module imports no botocore at import time: the launcher loads botocore only
when a value needs botocore's STS model or ``Config`` to be checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from .config.settings import Settings
from .config.variables import BUILTIN_METHODS
from .errors import ConfigError
from .util import importer

if TYPE_CHECKING:
    from .methods import Method
    from .util.patterns import LazyPattern

# When nothing names a region, an STS client still needs one: the partition's home.
PARTITION_REGION = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}


# NamedTuples, not frozen dataclasses: as immutable, and this module is imported in
# botocore's import hook of every process, where a dataclass costs about 1 ms each.
class Origin(NamedTuple):
    """What the user wrote, to name in errors: environment variables or Python arguments."""

    assume_role_kwargs: str
    sts_client_kwargs: str
    role: str
    cache_dir: str
    method: str = "BRS_METHOD"
    custom_method: str = "BRS_CUSTOM_METHOD"


ENVIRONMENT = Origin("BRS_ASSUME_ROLE_KWARGS", "BRS_STS_CLIENT_KWARGS", "BRS_ROLE_ARN", "BRS_CACHE_DIR")
ARGUMENTS = Origin("assume_role_kwargs", "sts_client_kwargs", "assume_role_kwargs", "cache_dir")


class Hop(NamedTuple):
    """One set of credentials of the chain: the first one's method, AssumeRole for the rest."""

    role_arn: str | None  # None: a plugin's or custom method's own credentials
    params: Mapping[str, Any]  # complete STS parameters, checked (may hold secrets: no repr)
    method: Method
    mfa: bool = False  # this hop's AssumeRole carries the MFA code

    def __repr__(self) -> str:
        return f"Hop(role_arn={self.role_arn!r}, params=keys {sorted(self.params)}, mfa={self.mfa})"


class Plan(NamedTuple):
    """Everything :func:`brs_autopatch.build.build_from_plan` needs, validated."""

    settings: Settings
    hops: tuple[Hop, ...]
    # create_client("sts", ...) keywords; "config" is a botocore Config (ours merged
    # with the user's). region_name may be missing: the source session decides then.
    # May hold secret keys: never in the repr.
    sts_client_kwargs: Mapping[str, Any]
    cache_dir: str | None = None
    mfa: bool = False

    def __repr__(self) -> str:
        return f"Plan(settings={self.settings!r}, hops={self.hops!r}, cache_dir={self.cache_dir!r})"


def make(settings: Settings, *, origin: Origin = ENVIRONMENT, mfa: bool | None = None) -> Plan:
    """Check everything ``settings`` say and return the plan; ConfigError for the first bad value.

    ``mfa``: whether an MFA token provider will be given (default: whether
    BRS_MFA_TOKEN_COMMAND is set). Imports botocore, and BRS_CUSTOM_METHOD's module
    (under a guard: its ``sys.exit()`` or exception is a ConfigError).
    """
    from .config import profiles
    from .methods.base import import_callable
    from .methods.registry import load
    from .methods.sts import assume_role_method

    settings, _ = profiles.resolve(settings)  # BRS_PROFILE: the role from the AWS config
    origin = _named(settings, origin)
    with_mfa = bool(settings.mfa_token_command) if mfa is None else mfa
    hops = _hops(settings, with_mfa, origin)
    _check_params(settings, hops, origin)
    try:
        method = load(settings.method)
        if settings.custom_method is not None and settings.method == "custom":
            import_callable(settings.custom_method, origin.custom_method)
    except ConfigError as error:
        if not _circular(error):
            raise
        # Run from botocore's import hook inside `import boto3`, a module doing
        # `from boto3 import Session` sees boto3 half made. Not the user's fault:
        # import it when the credentials are first built instead.
        method = _load_later(settings.method)
    client_kwargs = _client_kwargs(settings, origin)
    _check_cache_dir(settings, origin)
    return Plan(
        settings=settings,
        hops=tuple(
            Hop(arn, MappingProxyType(params), method if index == 0 else assume_role_method, hop_mfa)
            for index, (arn, params, hop_mfa, _) in enumerate(hops)
        ),
        sts_client_kwargs=MappingProxyType(client_kwargs),
        cache_dir=settings.cache_dir,
        mfa=with_mfa,
    )


def check(settings: Settings, *, origin: Origin = ENVIRONMENT, search_path: Sequence[str] = ()) -> None:
    """The checks of :func:`make` for a process that is not the program: the brs-run launcher.

    The same steps, but no code of the user's or of a plugin runs here (it would run
    twice, with the program's side effects, in the wrong process): a plugin must be
    installed, BRS_CUSTOM_METHOD's module must be found on ``search_path`` plus
    ``sys.path``; importing them is the program's plan. botocore is loaded only when
    a value needs it (BRS_ASSUME_ROLE_KWARGS, BRS_STS_CLIENT_KWARGS).
    """
    if settings.profile:
        from .config import profiles

        settings, _ = profiles.resolve(settings)
    hops = _hops(settings, bool(settings.mfa_token_command), origin)
    _check_params(settings, hops, origin)
    if settings.method not in BUILTIN_METHODS:
        _check_plugin_installed(settings.method)
    if settings.custom_method is not None and settings.method == "custom":
        module = settings.custom_method.partition(":")[0]
        if not importer.locate(module, search_path):
            raise ConfigError(
                f"{origin.custom_method}={settings.custom_method!r} is not valid: no module {module!r} "
                "on the program's import path (PYTHONPATH, the current directory, site-packages); "
                "expected package.module:callable of an importable module"
            )
    if settings.sts_client_kwargs:
        _client_kwargs(settings, origin)
    _check_cache_dir(settings, origin)


# -- the steps ------------------------------------------------------------------------------


def _named(settings: Settings, origin: Origin) -> Origin:
    """Settings made from Python arguments (patched()) name those arguments in errors."""
    if not settings.origin:
        return origin
    return Origin(
        assume_role_kwargs=settings.name_of("assume_role_kwargs"),
        sts_client_kwargs=settings.name_of("sts_client_kwargs"),
        role=settings.name_of("role_arns"),
        cache_dir=settings.name_of("cache_dir"),
        method=settings.name_of("method"),
        custom_method=settings.name_of("custom_method"),
    )


def _hostname() -> str:
    # os.uname().nodename is what socket.gethostname() returns on POSIX, without importing
    # socket (4 ms) into the launcher.
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


def default_session_name() -> str:
    """``brs-autopatch.<host>``: meaningful in CloudTrail, valid as a RoleSessionName."""
    host = re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", _hostname())
    return f"brs-autopatch.{host}"[:64]


# (role ARN, STS parameters, carries the MFA code, carries the caller's conditions)
_HopParams = tuple[str | None, dict[str, Any], bool, bool]


def _hops(settings: Settings, mfa: bool, origin: Origin) -> list[_HopParams]:
    """(role ARN, STS parameters, carries MFA) for every hop, first to last."""
    arns: list[str | None] = list(settings.role_arns)
    if settings.method == "served":
        # brs-run --serve: the launch tree's server assumed the served role already; a role
        # asked for on top of it is chained from the served credentials (brs_autopatch.config.nested).
        from .config import nested

        chained = nested.chained_roles(settings)
        nested.check_chained(settings, chained)
        arns = [None, *chained]
    elif settings.method not in ("sts", "web-identity"):
        arns.insert(0, None)  # a plugin's own credentials come first, roles are assumed on top
    if not arns:
        raise ConfigError(f"{origin.role} is not set: expected the role to assume")
    if mfa and not settings.mfa_serial:
        raise ConfigError("BRS_MFA_SERIAL is not set: expected the MFA device serial or ARN")
    # The caller's AssumeRole conditions (BRS_ASSUME_ROLE_KWARGS, ExternalId, MFA) go with
    # the first role assumed: after a plugin's own credentials, that is the second hop.
    first_role = 1 if arns[0] is None and len(arns) > 1 else 0
    hops: list[_HopParams] = []
    for index, arn in enumerate(arns):
        first = index == first_role
        params: dict[str, Any] = {}
        if arn is not None:
            params = dict(settings.assume_role_kwargs) if first else {}
            params["RoleArn"] = arn
            params["RoleSessionName"] = settings.role_session_name or default_session_name()
            if settings.duration_seconds is not None:
                params["DurationSeconds"] = settings.duration_seconds
            if first and settings.external_id is not None:
                params["ExternalId"] = settings.external_id
            if first and mfa:
                params["SerialNumber"] = settings.mfa_serial
        hops.append((arn, params, first and mfa and arn is not None, first))
    if settings.method == "web-identity":
        from .methods.web_identity import check_params

        check_params(hops[0][1], mfa, origin.method)
    return hops


def _check_params(settings: Settings, hops: list[_HopParams], origin: Origin) -> None:
    """Every hop's parameters against botocore's STS model.

    Skipped when every value has the form settings.py enforces for its own variable:
    loading the model costs tens of ms (and botocore itself, in the launcher).
    """
    if not settings.assume_role_kwargs and _own_variables_valid(settings):
        return
    from .config.botocore_checks import validate_sts_params

    for arn, params, mfa, first in hops:
        if arn is None:
            continue
        where = origin.assume_role_kwargs if first else origin.role
        if settings.method == "web-identity":
            validate_sts_params({**params, "WebIdentityToken": "token"}, where, "AssumeRoleWithWebIdentity")
        else:
            validate_sts_params({**params, "TokenCode": "000000"} if mfa else params, where)


def _own_variables_valid(settings: Settings) -> bool:
    """Whether the parameters with a variable of their own match that variable's pattern.

    True for settings from the environment; the explicit API fills the same fields
    from its arguments unchecked, and those go to the model.
    """
    from .config.variables import _EXTERNAL_ID, _MFA_SERIAL, _SESSION_NAME, MIN_DURATION

    def matches(value: Any, pattern: LazyPattern) -> bool:
        return value is None or (isinstance(value, str) and pattern.fullmatch(value) is not None)

    duration = settings.duration_seconds
    return (
        matches(settings.role_session_name, _SESSION_NAME)
        and matches(settings.external_id, _EXTERNAL_ID)
        and matches(settings.mfa_serial, _MFA_SERIAL)
        and (duration is None or (type(duration) is int and duration >= MIN_DURATION))
    )


def _client_kwargs(settings: Settings, origin: Origin) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if settings.sts_client_kwargs:
        from .config.botocore_checks import sts_client_kwargs

        kwargs = sts_client_kwargs(settings.sts_client_kwargs, origin.sts_client_kwargs)
    if settings.sts_region and "region_name" not in kwargs:
        kwargs["region_name"] = settings.sts_region
    if settings.sts_endpoint_url and "endpoint_url" not in kwargs:
        kwargs["endpoint_url"] = settings.sts_endpoint_url
    given = kwargs.get("config")
    kwargs["config"] = default_sts_config().merge(given) if given else default_sts_config()
    return kwargs


@cache
def default_sts_config() -> Any:
    """STS calls run on the request path of a refresh: fail fast instead of botocore's
    60 s timeouts and 5 legacy retries; our own backoff retries across requests."""
    from botocore.config import Config

    return Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard", "total_max_attempts": 2})


def _circular(error: ConfigError) -> bool:
    """Whether an import failed only because a module it needs is still being imported."""
    cause = error.__context__  # methods raises ConfigError `from None`: still recorded here
    return isinstance(cause, (ImportError, AttributeError)) and "partially initialized module" in str(cause)


def _load_later(name: str) -> Method:
    def method(context: Any) -> Any:
        from .methods.registry import load

        return load(name)(context)

    method.__qualname__ = f"load_later({name!r})"
    return method


def _check_cache_dir(settings: Settings, origin: Origin) -> None:
    if settings.cache_dir is not None:
        from .credentials.cache import check_directory

        check_directory(settings.cache_dir, origin.cache_dir)


def _check_plugin_installed(name: str) -> None:
    from importlib.metadata import entry_points

    from .methods.base import ENTRY_POINT_GROUP

    if entry_points(group=ENTRY_POINT_GROUP, name=name):
        return
    found = sorted({*BUILTIN_METHODS, *(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))})
    raise ConfigError(f"BRS_METHOD={name!r} is not valid: expected one of {', '.join(found)}")
