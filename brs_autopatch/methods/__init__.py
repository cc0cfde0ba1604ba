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

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from dateutil.parser import isoparse

from ..config.settings import BUILTIN_METHODS, Settings
from ..credentials import failures, reentry
from ..credentials.mfa import TokenProvider, redact_botocore_logs
from ..errors import ConfigError
from ..util import redact

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
# The thread-local "a method runs here" context lives in brs_autopatch.credentials.reentry.
fetching = reentry.fetching
source_credentials = reentry.source_credentials


def make_fetcher(method: Method, context: MethodContext) -> Fetch:
    """``method(context)``, building and every call of the fetch marked as a method run."""
    with reentry.running(context.source):
        fetch = method(context)
    if not callable(fetch):
        raise MethodError(
            f"credential method {_name(method)} returned {type(fetch).__name__}, "
            "expected a function returning credentials"
        )

    def run() -> dict[str, Any]:
        with reentry.running(context.source):
            answer = fetch()
        # Every method's answer, plugins' included, is checked and normalised the same
        # way; a bad one is a MethodError inside the engine's error handling (backoff).
        return _check_answer(_name(method), answer)

    where = failures.where(fetch)  # the STS endpoint and region, for error messages
    if where is not None:
        setattr(run, "where", where)  # noqa: B010
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
    # Configured secrets are masked in our logs and errors from now on.
    argv = context.settings.mfa_token_command
    redact.remember(context.params.get("ExternalId"), " ".join(argv), *argv[1:], pinned=True)

    def fetch() -> Mapping[str, Any]:
        params = dict(context.params)
        if mfa is None:
            return from_sts_response(client.assume_role(**params))
        # Asked for here, once per AssumeRole call: never per request, never reused.
        code = params["TokenCode"] = mfa()
        try:
            return from_sts_response(client.assume_role(**params))
        except (EndpointConnectionError, ConnectTimeoutError):
            # The request never reached STS, so the code is unspent: the retry may send
            # it (a TOTP code lives 30 s; refusing it would wait for the next one).
            release = getattr(mfa, "release", None)
            if release is not None:
                release(code)
            raise

    failures.mark(fetch, client)
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
        token = _read_token(token_file)
        redact.remember(token)
        return from_sts_response(client.assume_role_with_web_identity(WebIdentityToken=token, **params))

    failures.mark(fetch, client)
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


def served_method(context: MethodContext) -> Fetch:
    """``served``: the launch tree's credential server (``brs-run --serve`` sets it up).

    Lives in :mod:`brs_autopatch.methods.served`; imported only where it is used.
    """
    from .served import served_method as method

    return method(context)


_BUILTINS: dict[str, Method] = {
    "sts": assume_role_method,
    "web-identity": web_identity_method,
    "custom": custom_method,
    "served": served_method,
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
        except (Exception, SystemExit) as error:  # a broken plugin: say which one, in one line
            raise ConfigError(
                f"BRS_METHOD={name!r} is not valid: its entry point {entry.value} cannot be "
                f"loaded ({_failure(error)}); expected a plugin that imports cleanly"
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
    """Import ``package.module:callable``; anything going wrong is a ConfigError naming it.

    A module that calls ``sys.exit()`` while being imported would otherwise end the
    program at its first AWS call: SystemExit is an error here. KeyboardInterrupt
    (and other BaseExceptions) still propagate: the user asked to stop.
    """
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (Exception, SystemExit) as error:
        raise ConfigError(
            f"{variable}={path!r} is not valid: cannot import it ({_failure(error)}); "
            "expected package.module:callable that imports cleanly"
        ) from None
    if not callable(target):
        raise ConfigError(f"{variable}={path!r} is not valid: expected a callable")
    return target  # type: ignore[no-any-return]


def _failure(error: BaseException) -> str:
    """One line for an import failure (the module's own message, whitespace folded)."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}) while being imported"
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


assert set(_BUILTINS) == set(BUILTIN_METHODS)
