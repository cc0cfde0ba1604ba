"""What every credential method shares: the context it gets, the answer it must give.

:class:`MethodContext`, the ``Fetch``/``Method`` types, the errors, :func:`make_fetcher`
(which runs a method marked as a method run and checks every answer the same way), the
STS-response and expiry conversions, and importing ``package.module:callable``. No
method lives here: see ``sts``, ``custom``, ``served``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dateutil.parser import isoparse

from ..config.settings import Settings
from ..credentials import failures, reentry
from ..credentials.mfa import TokenProvider
from ..errors import ConfigError

if TYPE_CHECKING:
    import botocore.session

ENTRY_POINT_GROUP = "brs_autopatch.methods"
Fetch = Callable[[], Mapping[str, Any]]

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
            f"credential method {method_name(method)} returned {type(fetch).__name__}, "
            "expected a function returning credentials"
        )

    def run() -> dict[str, Any]:
        with reentry.running(context.source):
            answer = fetch()
        # Every method's answer, plugins' included, is checked and normalised the same
        # way; a bad one is a MethodError inside the engine's error handling (backoff).
        return check_answer(method_name(method), answer)

    where = failures.where(fetch)  # the STS endpoint and region, for error messages
    if where is not None:
        setattr(run, "where", where)  # noqa: B010
    return run


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


def check_answer(origin: str, answer: Any) -> dict[str, Any]:
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


def method_name(method: Method) -> str:
    return f"{getattr(method, '__module__', '?')}:{getattr(method, '__qualname__', repr(method))}"


def import_callable(path: str, variable: str) -> Callable[[], Any]:
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
            f"{variable}={path!r} is not valid: cannot import it ({import_failure(error)}); "
            "expected package.module:callable that imports cleanly"
        ) from None
    if not callable(target):
        raise ConfigError(f"{variable}={path!r} is not valid: expected a callable")
    return target  # type: ignore[no-any-return]


def import_failure(error: BaseException) -> str:
    """One line for an import failure (the module's own message, whitespace folded)."""
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r}) while being imported"
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def merge_config(config: Any, extra: Any) -> Any:
    """The caller's botocore ``Config`` (from sts_client_kwargs) with ``extra`` merged in."""
    from botocore.config import Config

    return config.merge(extra) if isinstance(config, Config) else extra
