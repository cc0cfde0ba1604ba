"""aiobotocore's view of the shared RoleCredentials: awaitable, and never blocking the loop.

There is one refresh state per process: the :class:`~brs_autopatch.credentials.engine.RoleCredentials`
that boto3/botocore sessions share. aiobotocore gets :class:`AioRoleCredentials`, a thin view
of it speaking aiobotocore's credentials protocol (awaitable ``get_frozen_credentials`` and
``get_account_id``, sync ``get_deferred_property``, ``method``).

* Fresh credentials: ``frozen_if_fresh()`` answers without a lock, an ``await`` that
  suspends, or a thread hop.
* Advisory window (the current credentials are still good): served at once; one daemon
  thread per process refreshes behind them, like botocore's non-blocking advisory refresh.
* Mandatory window or never fetched: the coroutine waits, but the event loop does not —
  the refresh runs in a worker thread (anyio's ``to_thread`` for anyio sessions, the loop's
  executor otherwise), and the coroutines of one loop share that one pending call.
  Across loops and threads botocore's refresh lock (inside RoleCredentials) serialises,
  and its re-check under the lock keeps it to one AssumeRole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from botocore.credentials import ReadOnlyCredentials

from ..errors import CredentialRefreshError
from .engine import RoleCredentials

logger = logging.getLogger("brs_autopatch")


class _Hub:
    """Off-loop refresh bookkeeping for one RoleCredentials, shared by all its views."""

    def __init__(self, shared: RoleCredentials) -> None:
        self.shared = shared
        # event loop (or anyio/trio token) -> the one pending refresh of that loop
        self.pending: dict[Any, Any] = {}
        self._kick_lock = threading.Lock()
        self._kicked: threading.Thread | None = None

    def current(self) -> ReadOnlyCredentials | None:
        """The credentials held now, fresh or not, without refreshing (None: never fetched)."""
        frozen = self.shared.frozen_if_fresh()
        if frozen is not None:
            return frozen
        # botocore's attribute (see docs/how-it-works.md, "Design notes"): written in one assignment at
        # the end of every refresh, so a reader sees the old or the new credentials.
        held: ReadOnlyCredentials | None = getattr(self.shared, "_frozen_credentials", None)
        return held

    def usable_now(self) -> ReadOnlyCredentials | None:
        """The held credentials if they are good beyond the mandatory window."""
        _, mandatory = self.shared.windows
        if self.shared.refresh_needed(mandatory):
            return None
        return self.current()

    def kick(self) -> None:
        """Start a refresh in a daemon thread unless one runs (advisory window)."""
        with self._kick_lock:
            if self._kicked is not None and self._kicked.is_alive():
                return
            self._kicked = threading.Thread(
                target=self._refresh_quietly, name=f"brs-aio-refresh {self.shared.label}", daemon=True
            )
            self._kicked.start()

    def _refresh_quietly(self) -> None:
        try:
            self.shared.get_frozen_credentials()
        except Exception as error:  # the next request retries; RoleCredentials has logged it
            logger.debug("advisory refresh of %s failed: %s", self.shared.label, error)

    def after_fork_in_child(self) -> None:
        # Futures of the parent's loops and its refresh thread do not exist in the child.
        self.pending = {}
        self._kick_lock = threading.Lock()
        self._kicked = None

    async def refresh(self, use_anyio: bool) -> ReadOnlyCredentials:
        """Wait, off the loop, for botocore's refresh; one pending call per loop."""
        if not use_anyio:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                use_anyio = True  # not asyncio (trio under anyio)
            else:
                return await self._refresh_asyncio(loop)
        return await self._refresh_anyio()

    async def _refresh_asyncio(self, loop: asyncio.AbstractEventLoop) -> ReadOnlyCredentials:
        future: asyncio.Future[ReadOnlyCredentials] | None = self.pending.get(loop)
        if future is None:
            future = loop.create_task(asyncio.to_thread(self.shared.get_frozen_credentials))
            self.pending[loop] = future
            future.add_done_callback(lambda done: self._done(loop, done))
        try:
            # shield: a cancelled caller does not cancel the others' refresh.
            return await asyncio.shield(future)
        except CredentialRefreshError as error:
            raise _fresh_copy(error) from error.__cause__

    def _done(self, key: Any, future: asyncio.Future[ReadOnlyCredentials]) -> None:
        if self.pending.get(key) is future:
            del self.pending[key]
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" if all callers left

    async def _refresh_anyio(self) -> ReadOnlyCredentials:
        import anyio
        import anyio.to_thread

        key = _anyio_loop_key()
        waiting: _Outcome | None = self.pending.get(key)
        if waiting is None:
            outcome = _Outcome(anyio.Event())
            self.pending[key] = outcome
            try:
                # Not abandoned on cancel: the outcome is always set before others wake.
                await anyio.to_thread.run_sync(outcome.run, self.shared.get_frozen_credentials)
            finally:
                if self.pending.get(key) is outcome:
                    del self.pending[key]
                outcome.event.set()
            return outcome.result()
        await waiting.event.wait()
        return waiting.result()


class _Outcome:
    """Result of one pending refresh for anyio callers; set in the worker thread."""

    def __init__(self, event: Any) -> None:
        self.event = event
        self.value: ReadOnlyCredentials | None = None
        self.error: BaseException | None = None

    def run(self, fetch: Callable[[], ReadOnlyCredentials]) -> None:
        try:
            self.value = fetch()
        except BaseException as error:
            self.error = error

    def result(self) -> ReadOnlyCredentials:
        if self.error is not None:
            if isinstance(self.error, CredentialRefreshError):
                raise _fresh_copy(self.error) from self.error.__cause__
            raise self.error
        if self.value is None:
            raise RuntimeError("brs_autopatch: a credential refresh ended without a result")
        return self.value


def _anyio_loop_key() -> Any:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.lowlevel.current_trio_token()


def _fresh_copy(error: CredentialRefreshError) -> CredentialRefreshError:
    # Coroutines sharing one failed refresh each get their own exception: re-raising
    # one object from many tasks would grow its traceback.
    return CredentialRefreshError(error.role, error.cause, transient=error.transient)


_hubs: weakref.WeakKeyDictionary[RoleCredentials, _Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def hub_for(shared: RoleCredentials) -> _Hub:
    with _hubs_lock:
        hub = _hubs.get(shared)
        if hub is None:
            hub = _hubs[shared] = _Hub(shared)
        return hub


def _after_fork_in_child() -> None:
    global _hubs_lock
    _hubs_lock = threading.Lock()
    for hub in list(_hubs.values()):
        hub.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class AioRoleCredentials:
    """What aiobotocore signs with: a view of the process's shared RoleCredentials."""

    def __init__(self, shared: RoleCredentials, *, use_anyio: bool = False) -> None:
        self._shared = shared
        self._hub = hub_for(shared)
        self._use_anyio = use_anyio

    def __repr__(self) -> str:
        return f"<AioRoleCredentials {self._shared.label}>"

    @property
    def shared(self) -> RoleCredentials:
        """The RoleCredentials this is a view of (the same object boto3 sessions use)."""
        return self._shared

    @property
    def method(self) -> str:
        return str(self._shared.method)

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        frozen = self._shared.frozen_if_fresh()
        if frozen is not None:
            return frozen  # the hot path: returns without suspending
        usable = self._hub.usable_now()
        if usable is not None:
            self._hub.kick()  # advisory window: refresh behind the current credentials
            return usable
        return await self._hub.refresh(self._use_anyio)

    async def get_account_id(self) -> str | None:
        # getattr: ReadOnlyCredentials has no account_id before botocore 1.35.
        account: str | None = getattr(await self.get_frozen_credentials(), "account_id", None)
        return account

    async def get_access_key(self) -> str | None:
        return (await self.get_frozen_credentials()).access_key

    async def get_secret_key(self) -> str | None:
        return (await self.get_frozen_credentials()).secret_key

    async def get_token(self) -> str | None:
        return (await self.get_frozen_credentials()).token

    # Sync accessors, for code written against botocore's Credentials: the credentials
    # held now, without waiting for a refresh (aiobotocore's own raise NotImplementedError);
    # only credentials never fetched are fetched here, as botocore's would be.
    def _held(self) -> ReadOnlyCredentials:
        held = self._hub.current()
        if held is None:
            held = self._shared.get_frozen_credentials()  # never fetched: fetch like botocore
        return held

    @property
    def access_key(self) -> str | None:
        return self._held().access_key

    @property
    def secret_key(self) -> str | None:
        return self._held().secret_key

    @property
    def token(self) -> str | None:
        return self._held().token

    @property
    def account_id(self) -> str | None:
        account: str | None = getattr(self._held(), "account_id", None)
        return account

    def get_deferred_property(self, property_name: str) -> Callable[[], Any]:
        def get_property() -> Any:
            return getattr(self, property_name, None)

        return get_property

    def refresh_needed(self, refresh_in: int | None = None) -> bool:
        needed: bool = self._shared.refresh_needed(refresh_in)
        return needed


async def to_thread(function: Any, use_anyio: bool) -> Any:
    """Run a blocking call (an STS refresh) off the event loop, in the session's async backend.

    Shared by the async provider (:mod:`brs_autopatch.patch.aio`) and async presigning
    (:mod:`brs_autopatch.credentials.presign`).
    """
    if use_anyio:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(function)
    return await asyncio.to_thread(function)
