"""Credential methods: how one set of credentials is obtained. Plugins welcome.

A method is a callable ``method(context) -> fetch``; ``fetch()`` returns botocore's
credential metadata (``access_key``, ``secret_key``, ``token``, ``expiry_time`` as an
ISO-8601 string or an aware datetime, optionally ``account_id`` and ``session_name``).
Methods are found through the entry-point group ``brs_autopatch.methods``; the three
built-ins are registered there too (see pyproject.toml), and are also known without
package metadata so a source checkout works.

A method builds its clients from ``context.sts_client()`` or ``context.source()``.
Sessions it makes any other way (``boto3.client(...)`` in a ``BRS_CUSTOM_METHOD``
callable) also sign with the *source* credentials while the method runs: see
:func:`make_fetcher`.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from dateutil.parser import isoparse

from . import sources
from .errors import ConfigError
from .mfa import TokenProvider, redact_botocore_logs
from .settings import BUILTIN_METHODS, Settings

ENTRY_POINT_GROUP = "brs_autopatch.methods"
Fetch = Callable[[], Mapping[str, Any]]

# AssumeRoleWithWebIdentity takes these of the AssumeRole parameters (and no MFA).
WEB_IDENTITY_PARAMS = frozenset({"RoleArn", "RoleSessionName", "DurationSeconds", "Policy", "PolicyArns"})
_METADATA_KEYS = ("access_key", "secret_key", "token", "expiry_time")
_STS_KEYS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


class MethodError(RuntimeError):
    """A credential method answered something unusable. A bug, not a blip: permanent."""

    permanent = True


class WebIdentityTokenError(RuntimeError):
    """The token file is missing or empty. Transient: a projected token may appear later."""


@dataclass(frozen=True)
class MethodContext:
    """What a method gets to work with. One context per credentials object."""

    settings: Settings
    role_arn: str | None
    # Complete STS parameters for this hop (RoleArn, RoleSessionName, DurationSeconds, ...).
    params: Mapping[str, Any] = field(repr=False)
    sts_client_kwargs: Mapping[str, Any] = field(repr=False)
    # Builds the botocore session whose credentials sign the STS call (the source).
    source: Callable[[], botocore.session.Session] = field(repr=False)
    mfa_token_provider: TokenProvider | None = field(default=None, repr=False)

    def sts_client(self, **overrides: Any) -> Any:
        """An STS client from the source session; build it once per fetcher and reuse it."""
        return self.source().create_client("sts", **{**self.sts_client_kwargs, **overrides})


Method = Callable[[MethodContext], Fetch]


# -- running a method -------------------------------------------------------------------
# While a method runs (built or called), this thread's stack holds its source. Two
# readers: the patch's credential provider (a session the method creates for itself
# must not get the role credentials being fetched) and RoleCredentials (a request the
# method signs with those very credentials, e.g. through boto3's default session, is
# signed with the source instead: botocore's refresh lock is held by this thread, so
# waiting for it would deadlock, and the role would otherwise assume itself).


class _Running:
    def __init__(self, source: Callable[[], botocore.session.Session]) -> None:
        self.source = source
        self.frozen: ReadOnlyCredentials | None = None


_local = threading.local()


def _stack() -> list[_Running]:
    stack: list[_Running] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


@contextlib.contextmanager
def _running(context: MethodContext) -> Iterator[None]:
    stack = _stack()
    stack.append(_Running(context.source))
    default_before = _boto3_default_session()
    try:
        yield
    finally:
        stack.pop()
        default_after = _boto3_default_session()
        if default_after is not None and default_after is not default_before:
            # boto3's default session was created by the method (boto3.client() inside
            # it) and may have cached the source credentials: the application must
            # get the role from it, so let it look its credentials up again.
            sources.forget_loaded_credentials(sources.botocore_session_of(default_after))


def _boto3_default_session() -> Any:
    boto3 = sys.modules.get("boto3")
    return getattr(boto3, "DEFAULT_SESSION", None)


def fetching() -> bool:
    """Whether this thread is running a credential method right now."""
    return bool(getattr(_local, "stack", None))


def source_credentials() -> ReadOnlyCredentials | None:
    """The source credentials of the method running on this thread (None if none runs)."""
    stack: list[_Running] | None = getattr(_local, "stack", None)
    if not stack:
        return None
    running = stack[-1]
    if running.frozen is None:
        credentials = running.source().get_credentials()
        if credentials is None:
            return None
        running.frozen = credentials.get_frozen_credentials()
    return running.frozen


def make_fetcher(method: Method, context: MethodContext) -> Fetch:
    """``method(context)``, building and every call of the fetch marked as a method run."""
    with _running(context):
        fetch = method(context)
    if not callable(fetch):
        raise MethodError(
            f"credential method {_name(method)} returned {type(fetch).__name__}, "
            "expected a function returning credentials"
        )

    def run() -> Mapping[str, Any]:
        with _running(context):
            return fetch()

    return run


# -- the built-in methods ---------------------------------------------------------------


def from_sts_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """AssumeRole* response -> credential metadata."""
    creds = response["Credentials"]
    user_arn = response.get("AssumedRoleUser", {}).get("Arn", "")
    parts = user_arn.split(":")
    metadata = {
        "access_key": creds["AccessKeyId"],
        "secret_key": creds["SecretAccessKey"],
        "token": creds["SessionToken"],
        "expiry_time": utc_iso(creds["Expiration"]),
    }
    # Only what the response tells (a custom method's bare Credentials has no user).
    if len(parts) > 4 and parts[4]:
        metadata["account_id"] = parts[4]
    if user_arn:
        metadata["session_name"] = user_arn.rsplit("/", 1)[-1]
    return metadata


def utc_iso(expiry: datetime | str) -> str:
    """An expiry as an ISO-8601 string with its offset; a naive time is taken as UTC.

    botocore compares the expiry with an aware "now": a naive one (a custom method's
    ``datetime.utcnow() + ...``) would raise TypeError inside its refresh.
    """
    when = expiry if isinstance(expiry, datetime) else isoparse(str(expiry))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.isoformat()


def assume_role_method(context: MethodContext) -> Fetch:
    """``sts``: AssumeRole with the source credentials (the default)."""
    mfa = context.mfa_token_provider
    if mfa is None:
        client = context.sts_client()
    else:
        # botocore retries a failed call by sending the same request again, TokenCode
        # included; STS may have consumed that code already. One attempt per code: our
        # own backoff retries, with a fresh code.
        client = context.sts_client(
            config=_merge(context.sts_client_kwargs.get("config"), Config(retries={"total_max_attempts": 1}))
        )
        redact_botocore_logs()

    def fetch() -> Mapping[str, Any]:
        params = dict(context.params)
        if mfa is not None:
            # Asked for here, once per AssumeRole call: never per request, never reused.
            params["TokenCode"] = mfa()
        return from_sts_response(client.assume_role(**params))

    return fetch


def web_identity_method(context: MethodContext) -> Fetch:
    """``web-identity``: AssumeRoleWithWebIdentity, token file re-read on every refresh."""
    token_file = context.settings.web_identity_token_file
    if token_file is None:
        raise ConfigError("BRS_WEB_IDENTITY_TOKEN_FILE is not set: expected a token file path")
    unsupported = sorted(set(context.params) - WEB_IDENTITY_PARAMS)
    if unsupported or context.mfa_token_provider is not None:
        # Dropping them silently would assume the role without the caller's conditions.
        names = ", ".join(unsupported) or "SerialNumber (MFA)"
        raise ConfigError(
            f"BRS_METHOD='web-identity' is not valid with {names}: "
            f"AssumeRoleWithWebIdentity takes only {', '.join(sorted(WEB_IDENTITY_PARAMS))}"
        )
    # The call is unsigned: the token is the credential, no source credentials needed.
    client = context.sts_client(
        config=_merge(context.sts_client_kwargs.get("config"), Config(signature_version=UNSIGNED))
    )
    params = dict(context.params)

    def fetch() -> Mapping[str, Any]:
        # Re-read every time: Kubernetes and other issuers rotate the file in place.
        return from_sts_response(
            client.assume_role_with_web_identity(WebIdentityToken=_read_token(token_file), **params)
        )

    return fetch


def _read_token(path: str) -> str:
    # O_NONBLOCK + a regular-file check: a FIFO (or device) in the token's place must
    # not hang the refresh, which holds the refresh lock. Symlinks are followed on
    # purpose: Kubernetes projects the token through one.
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WebIdentityTokenError(f"web identity token file {path} is not a regular file")
            token = handle.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise WebIdentityTokenError(f"cannot read web identity token file {path}: {reason}") from None
    if not token:
        raise WebIdentityTokenError(f"web identity token file {path} is empty")
    return token


def custom_method(context: MethodContext) -> Fetch:
    """``custom``: ``BRS_CUSTOM_METHOD=package.module:callable`` returns the credentials.

    The callable takes no argument and returns either botocore's metadata keys
    (``access_key``, ``secret_key``, ``token``, ``expiry_time``) or the STS
    ``Credentials`` shape (``AccessKeyId``, ``SecretAccessKey``, ``SessionToken``,
    ``Expiration``). Clients it creates sign with the source credentials.
    """
    path = context.settings.custom_method
    if path is None:
        raise ConfigError("BRS_CUSTOM_METHOD is not set: expected package.module:callable")
    target = _import(path, "BRS_CUSTOM_METHOD")

    def fetch() -> Mapping[str, Any]:
        return _check_answer(path, target())

    return fetch


def _check_answer(origin: str, answer: Any) -> dict[str, Any]:
    """A custom answer -> metadata, or MethodError naming what is missing (never values)."""
    if not isinstance(answer, Mapping):
        raise MethodError(f"{origin} returned {type(answer).__name__}, expected a mapping")
    if "AccessKeyId" in answer:  # the STS Credentials shape
        missing = [key for key in _STS_KEYS if not answer.get(key)]
        if missing:
            raise MethodError(f"{origin} returned no {', '.join(missing)}")
        try:
            return from_sts_response({"Credentials": answer})
        except (TypeError, ValueError, OverflowError):
            raise MethodError(
                f"{origin} returned an Expiration that is not an ISO-8601 string or a datetime"
            ) from None
    metadata = dict(answer)
    missing = [key for key in _METADATA_KEYS if key != "token" and not metadata.get(key)]
    if missing:
        raise MethodError(
            f"{origin} returned no {', '.join(missing)} (expected keys "
            f"{', '.join(_METADATA_KEYS)} or {', '.join(_STS_KEYS)})"
        )
    try:
        metadata["expiry_time"] = utc_iso(metadata["expiry_time"])
    except (TypeError, ValueError, OverflowError):
        raise MethodError(
            f"{origin} returned an expiry_time that is not an ISO-8601 string or a datetime"
        ) from None
    metadata.setdefault("token", None)  # long-term keys with an expiry: botocore wants the key
    return metadata


_BUILTINS: dict[str, Method] = {
    "sts": assume_role_method,
    "web-identity": web_identity_method,
    "custom": custom_method,
}


def available() -> dict[str, str]:
    """Method name -> where it comes from, built-ins first."""
    from importlib.metadata import entry_points

    found = {name: f"brs_autopatch.methods:{fn.__name__}" for name, fn in _BUILTINS.items()}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def load(name: str) -> Method:
    """The method called ``name``; ConfigError listing the available ones if unknown."""
    if name in _BUILTINS:
        # Built-ins are also entry points; resolving them directly skips scanning
        # every installed distribution's metadata on the common path.
        return _BUILTINS[name]
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            method = entry.load()
        except Exception as error:  # a broken plugin: say which one, in one line
            raise ConfigError(
                f"BRS_METHOD={name!r} is not valid: its entry point {entry.value} cannot be "
                f"loaded ({type(error).__name__}: {error})"
            ) from None
        if not callable(method):
            raise ConfigError(
                f"BRS_METHOD={name!r} is not valid: its entry point {entry.value} is not callable"
            )
        return method  # type: ignore[no-any-return]
    names = ", ".join(sorted(available()))
    raise ConfigError(f"BRS_METHOD={name!r} is not valid: expected one of {names}")


def _merge(config: Any, extra: Config) -> Config:
    return config.merge(extra) if isinstance(config, Config) else extra


def _name(method: Method) -> str:
    return f"{getattr(method, '__module__', '?')}:{getattr(method, '__qualname__', repr(method))}"


def _import(path: str, variable: str) -> Callable[[], Any]:
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{variable}={path!r} is not valid: cannot import it ({error})") from None
    if not callable(target):
        raise ConfigError(f"{variable}={path!r} is not valid: expected a callable")
    return target  # type: ignore[no-any-return]


assert set(_BUILTINS) == set(BUILTIN_METHODS)
