"""Async botocore sessions (aiobotocore, hence aioboto3 and s3fs) under the patch.

``aiobotocore.session.AioSession`` subclasses botocore's ``Session``, so botocore's
initializer runs for it too; but aiobotocore *awaits* the resolver's
``load_credentials()`` and the credentials' ``get_frozen_credentials()``. This module
tells the kinds of session apart — by class, without importing aiobotocore — and gives
async sessions :class:`AsyncRoleFirstResolver`: our provider first, then aiobotocore's
own chain, built lazily; what it hands out is a view of the same shared credentials that
sync sessions use (:mod:`brs_autopatch.credentials.async_view`).

A ``Session`` subclass whose credential protocol we do not know (one with coroutine
credential methods that is not aiobotocore's) is left to botocore, with one warning.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Literal

from botocore.credentials import Credentials

from ..credentials.engine import RoleCredentials
from .providers import RoleFirstResolver

if TYPE_CHECKING:
    import botocore.session

    from .install import PatchState

logger = logging.getLogger("brs_autopatch")

Kind = Literal["sync", "async", "unknown"]

# Methods whose flavour (plain or coroutine) tells the credential protocol of a class.
_PROTOCOL_METHODS = ("get_credentials", "create_client", "get_service_model")

# Weak: a class made at run time (a test's throw-away subclass) is not kept alive.
_kinds: weakref.WeakKeyDictionary[type, Kind] = weakref.WeakKeyDictionary()
_warned: weakref.WeakSet[type] = weakref.WeakSet()
_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at fork time


os.register_at_fork(after_in_child=_reset_after_fork)


def _is_aiobotocore(cls: type) -> bool:
    module = getattr(cls, "__module__", "") or ""
    return module == "aiobotocore" or module.startswith("aiobotocore.")


def session_kind(cls: type) -> Kind:
    """``"sync"`` (botocore's protocol), ``"async"`` (aiobotocore's) or ``"unknown"``."""
    kind = _kinds.get(cls)
    if kind is None:
        kind = _kinds[cls] = _classify(cls)
    return kind


def _classify(cls: type) -> Kind:
    coroutines = {
        name: inspect.iscoroutinefunction(getattr(cls, name, None)) for name in _PROTOCOL_METHODS
    }
    if any(_is_aiobotocore(base) for base in cls.__mro__):
        # aiobotocore's AioSession (asyncio or, from 3.9, anyio/httpx by client config)
        # and subclasses of it: understood if get_credentials is still a coroutine.
        return "async" if coroutines["get_credentials"] else "unknown"
    if any(coroutines.values()):
        return "unknown"  # an async session that is not aiobotocore's
    return "sync"


def patch_session(session: botocore.session.Session, state: PatchState) -> bool:
    """Patch an async session, or skip an unknown one. False: a sync session, not handled."""
    cls = type(session)
    kind = session_kind(cls)
    if kind == "sync":
        return False
    if kind == "async":
        session.register_component("credential_provider", AsyncRoleFirstResolver(session, state))
        return True
    with _lock:
        first = cls not in _warned
        _warned.add(cls)
    if first:
        coroutines = [n for n in _PROTOCOL_METHODS if inspect.iscoroutinefunction(getattr(cls, n, None))]
        logger.warning(
            "brs_autopatch leaves sessions of class %s.%s to botocore: its credential protocol "
            "(%s) is not one brs_autopatch knows",
            cls.__module__,
            cls.__qualname__,
            f"coroutine {', '.join(coroutines)}" if coroutines else "aiobotocore's, plain get_credentials",
        )
    return True


def _uses_anyio(session: Any) -> bool:
    # aiobotocore >= 3.9: AsyncPrimitives.ANYIO when the client config's http_session_cls
    # is the httpx one (a private property: see docs/how-it-works.md, "Design notes").
    primitives = getattr(session, "_async_primitives", None)
    return getattr(primitives, "value", None) == "anyio"


def _aiobotocore_resolver(session: Any) -> Any:
    """aiobotocore's default credential resolver, across its signatures (2.x and 3.x)."""
    from aiobotocore.credentials import create_credential_resolver

    region = session.get_config_variable("region")
    if "async_primitives" in inspect.signature(create_credential_resolver).parameters:
        primitives = getattr(session, "_async_primitives", None)
        if primitives is not None:
            return create_credential_resolver(session, region_name=region, async_primitives=primitives)
    return create_credential_resolver(session, region_name=region)


class AsyncRoleFirstResolver(RoleFirstResolver):
    """aiobotocore's resolver with our provider first; ``load_credentials`` is awaitable."""

    @property
    def providers(self) -> list[Any]:
        if self._chain is None:
            self._chain = [self._role_provider, *_aiobotocore_resolver(self._session).providers]
        return self._chain

    @providers.setter
    def providers(self, value: list[Any]) -> None:
        self._chain = value

    async def load_credentials(self) -> Any:  # type: ignore[override]
        # Our provider before aiobotocore's chain (building it reads the config files).
        asked = self._chain is None
        if asked:
            found = await self._load_role()
            if found is not None:
                return found
        for provider in self.providers:
            if provider is self._role_provider:
                if asked:
                    continue
                loaded: Any = await self._load_role()
            else:
                loaded = provider.load()
                if inspect.isawaitable(loaded):
                    loaded = await loaded
            if loaded is not None:
                return self._view(loaded)
        return None

    async def _load_role(self) -> Any:
        if self.state.settings.defer_refresh:
            # Builds the credentials without fetching: no STS call, nothing to wait for.
            found = self._role_provider.load()
        else:
            # defer_refresh=False fetches once while building: not on the event loop.
            from ..credentials.async_view import to_thread

            found = await to_thread(self._role_provider.load, _uses_anyio(self._session))
        return self._view(found) if found is not None else None

    def _view(self, credentials: Credentials | Any) -> Any:
        if isinstance(credentials, RoleCredentials):
            # Imported here: it imports asyncio, which a sync-only process never needs.
            from ..credentials.async_view import AioRoleCredentials

            return AioRoleCredentials(credentials, use_anyio=_uses_anyio(self._session))
        return credentials
