"""Presigned URLs that live as long as their ``ExpiresIn`` asks, where the role allows it.

A SigV4 URL (or POST policy) signed with temporary credentials stops working when those
credentials expire, whatever its ``ExpiresIn``: with refreshing credentials a 1-hour URL
made 5 minutes before a refresh dies after 5 minutes, silently. Here, a client whose
credentials are :class:`~brs_autopatch.credentials.engine.RoleCredentials` (or aiobotocore's view
of them) first makes them last ``ExpiresIn`` if a refresh can
(:meth:`RoleCredentials.ensure_lasting`: one STS call, shared by every thread waiting, none
when the current ones last long enough), then signs. Where the role cannot give that long
(its session duration, role chaining's hour) the URL is still made and one WARNING says
when it will stop working and which setting to change.

How: a handler of botocore's ``creating-client-class`` event (the public hook botocore
itself uses to add ``generate_presigned_url`` / ``generate_presigned_post`` to clients;
aiobotocore adds its async versions the same way) wraps those two methods of each client
class a patched session creates. It is not a signer: botocore signs as usual. Clients with
other credentials (explicit keys, a profile) are left alone.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from . import answers

logger = logging.getLogger("brs_autopatch")

EVENT = "creating-client-class"
UNIQUE_ID = "brs-autopatch-presign"
METHODS = ("generate_presigned_url", "generate_presigned_post")
DEFAULT_EXPIRES_IN = 3600  # botocore's default for both methods
# A URL may stop working up to this long before its ExpiresIn without a refresh or a
# warning: with 1-hour credentials and botocore's default 1-hour ExpiresIn, insisting on
# the last second would call STS for every URL. Also the least a refresh must gain.
SLACK_SECONDS = 60.0
_WRAPPED = "__brs_presign__"

_warned_lock = threading.Lock()
_warned: set[tuple[int, int]] = set()  # (id of the credentials, ExpiresIn) warned about


def _reset_after_fork() -> None:
    global _warned_lock
    _warned_lock = threading.Lock()  # a parent thread may have held it at fork time


os.register_at_fork(after_in_child=_reset_after_fork)


def register(session: Any) -> None:
    """Wrap the presign methods of every client class ``session`` creates."""
    session.register(EVENT, add_lasting_presign, unique_id=UNIQUE_ID)


def add_lasting_presign(class_attributes: dict[str, Any], **_: Any) -> None:
    for name in METHODS:
        original = class_attributes.get(name)
        if original is not None and not getattr(original, _WRAPPED, False):
            class_attributes[name] = _wrap(original)


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    try:
        signature: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None

    def expires_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | None:
        if signature is None:
            return None
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return None  # the original raises its own TypeError
        value = bound.arguments.get("ExpiresIn", DEFAULT_EXPIRES_IN)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # botocore's error, not ours
        return float(value)

    if inspect.iscoroutinefunction(original):

        async def presign_async(*args: Any, **kwargs: Any) -> Any:
            shared, use_anyio = _role_credentials(args[0] if args else None)
            seconds = expires_in(args, kwargs)
            if shared is not None and seconds is not None:
                from .async_view import to_thread

                # A refresh is an STS call: off the event loop.
                await to_thread(lambda: _make_last(shared, seconds), use_anyio)
            return await original(*args, **kwargs)

        wrapper: Callable[..., Any] = presign_async
    else:

        def presign(*args: Any, **kwargs: Any) -> Any:
            shared, _ = _role_credentials(args[0] if args else None)
            seconds = expires_in(args, kwargs)
            if shared is not None and seconds is not None:
                _make_last(shared, seconds)
            return original(*args, **kwargs)

        wrapper = presign
    wrapper.__name__ = getattr(original, "__name__", "presign")
    wrapper.__qualname__ = getattr(original, "__qualname__", wrapper.__name__)
    wrapper.__doc__ = original.__doc__
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _role_credentials(client: Any) -> tuple[Any, bool]:
    """The RoleCredentials a client signs with (and whether its session uses anyio), else None.

    botocore's own presign functions read ``client._request_signer``; its ``_credentials``
    is the object every request of the client is signed with.
    """
    from .engine import RoleCredentials

    signer = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    if isinstance(credentials, RoleCredentials):
        return credentials, False
    shared = getattr(credentials, "shared", None)  # aiobotocore's AioRoleCredentials
    if isinstance(shared, RoleCredentials):
        return shared, bool(getattr(credentials, "_use_anyio", False))
    return None, False


def _make_last(credentials: Any, seconds: float) -> None:
    try:
        left = credentials.ensure_lasting(seconds, SLACK_SECONDS)
    except Exception as error:
        # Signing will meet the same failure and raise it (as it would unpatched).
        logger.debug("presign: could not make the credentials of %s last: %s", credentials.label, error)
        return
    if left >= seconds - SLACK_SECONDS:
        return
    key = (id(credentials), int(seconds))
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    now = credentials.now()
    logger.log(
        logging.WARNING if first else logging.DEBUG,
        "a presigned URL with ExpiresIn=%d stops working at %s, in %.0f s, when the credentials "
        "that signed it expire: %s%s",
        int(seconds),
        answers.iso(now + left),
        left,
        credentials.presign_advice,
        " (further URLs with this ExpiresIn are logged at DEBUG)" if first else "",
    )


def advice(settings: Any, chained: bool) -> str:
    """The setting to change for longer-lived credentials, for the warning."""
    if chained:
        return (
            "role chaining (a role assumed with another role's credentials) limits the session "
            "to 1 hour; presign with a role assumed directly to go beyond"
        )
    if settings.method == "served":
        return "the credential server's role session is that long; raise its BRS_DURATION_SECONDS"
    if settings.origin.get("assume_role_kwargs") == "assume_role_kwargs":
        name = "assume_role_kwargs['DurationSeconds']"
    else:
        name = "BRS_DURATION_SECONDS"
    if settings.duration_seconds is None:
        return f"{name} is not set (STS gives 1 hour): set it, up to the role's maximum session duration"
    return f"{name}={settings.duration_seconds}: raise it, up to the role's maximum session duration"
