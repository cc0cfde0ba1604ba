"""Credential methods: how one set of credentials is obtained. Plugins welcome.

A method is a callable ``method(context) -> fetch``; ``fetch()`` returns botocore's
credential metadata (``access_key``, ``secret_key``, ``token``, ``expiry_time`` as an
ISO-8601 string or an aware datetime, optionally ``account_id`` and ``session_name``).
Methods are found through the entry-point group ``brs_autopatch.methods``; the three
built-ins are registered there too (see pyproject.toml), and are also known without
package metadata so a source checkout works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config

from .errors import ConfigError
from .mfa import TokenProvider
from .settings import BUILTIN_METHODS, Settings

ENTRY_POINT_GROUP = "brs_autopatch.methods"
Fetch = Callable[[], Mapping[str, Any]]


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


def from_sts_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """AssumeRole* response -> credential metadata."""
    creds = response["Credentials"]
    expiry = creds["Expiration"]
    user_arn = response.get("AssumedRoleUser", {}).get("Arn", "")
    parts = user_arn.split(":")
    return {
        "access_key": creds["AccessKeyId"],
        "secret_key": creds["SecretAccessKey"],
        "token": creds["SessionToken"],
        "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
        "account_id": parts[4] if len(parts) > 4 and parts[4] else None,
        "session_name": user_arn.rsplit("/", 1)[-1] if user_arn else None,
    }


def assume_role_method(context: MethodContext) -> Fetch:
    """``sts``: AssumeRole with the source credentials (the default)."""
    client = context.sts_client()

    def fetch() -> Mapping[str, Any]:
        params = dict(context.params)
        if context.mfa_token_provider is not None:
            # Asked for here, once per AssumeRole call: never per request, never reused.
            params["TokenCode"] = context.mfa_token_provider()
        return from_sts_response(client.assume_role(**params))

    return fetch


def web_identity_method(context: MethodContext) -> Fetch:
    """``web-identity``: AssumeRoleWithWebIdentity, token file re-read on every refresh."""
    token_file = context.settings.web_identity_token_file
    if token_file is None:
        raise ConfigError("BRS_WEB_IDENTITY_TOKEN_FILE is not set: expected a token file path")
    # The call is unsigned: the token is the credential, no source credentials needed.
    client = context.sts_client(config=_unsigned(context.sts_client_kwargs.get("config")))
    params = {k: v for k, v in context.params.items() if k in {"RoleArn", "RoleSessionName",
                                                                "DurationSeconds", "Policy", "PolicyArns"}}

    def fetch() -> Mapping[str, Any]:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
        return from_sts_response(client.assume_role_with_web_identity(WebIdentityToken=token, **params))

    return fetch


def custom_method(context: MethodContext) -> Fetch:
    """``custom``: ``BRS_CUSTOM_METHOD=package.module:callable`` returns the credentials."""
    path = context.settings.custom_method
    if path is None:
        raise ConfigError("BRS_CUSTOM_METHOD is not set: expected package.module:callable")
    target = _import(path, "BRS_CUSTOM_METHOD")

    def fetch() -> Mapping[str, Any]:
        answer = target()
        if not isinstance(answer, Mapping):
            raise TypeError(f"{path} returned {type(answer).__name__}, expected a mapping")
        if "AccessKeyId" in answer:  # the STS Credentials shape is accepted as well
            return from_sts_response({"Credentials": answer})
        return answer

    return fetch


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
        method = entry.load()
        if not callable(method):
            raise ConfigError(f"BRS_METHOD={name!r} is not valid: its entry point {entry.value} is not callable")
        return method  # type: ignore[no-any-return]
    names = ", ".join(sorted(available()))
    raise ConfigError(f"BRS_METHOD={name!r} is not valid: expected one of {names}")


def _unsigned(config: Config | None) -> Config:
    unsigned = Config(signature_version=UNSIGNED)
    return config.merge(unsigned) if isinstance(config, Config) else unsigned


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
