"""The role credentials a credential server answers with: built once, retried, put on the wire.

:class:`Credentials` wraps the server's one refreshing
:class:`~brs_autopatch.credentials.engine.RoleCredentials` (built by the same factory as
the patch, refreshing in the background ahead of its advisory window): it builds it on
first use (or before the program starts), spaces the retries of a failing first
AssumeRole, and turns a consistent snapshot into the container-protocol answer
(:mod:`brs_autopatch.methods.endpoint`), taking part in a refresh that is due when the
asking child holds the very credentials the server has (``X-Brs-Newer-Than``).

Not here: HTTP and the token check (:mod:`brs_autopatch.serve.server`), the processes
(:mod:`brs_autopatch.serve.supervisor`). :mod:`brs_autopatch.serve.inprocess` subclasses
:class:`Credentials` to answer from the installation's own credentials object.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..credentials.backoff import MANDATORY_BACKOFF_BASE, MANDATORY_BACKOFF_CAP, Backoff
from ..methods import endpoint

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..credentials.engine import RoleCredentials


class Credentials:
    """The role credentials, built before the program starts or on the first request."""

    def __init__(
        self, settings: Settings, *, clock: Callable[[], float] = time.time, background: bool = True
    ) -> None:
        # Background refresh whatever BRS_DEFER_REFRESH says: that setting only picks
        # when the first AssumeRole happens (now, or on the first request). The bench
        # simulates hours with ``clock`` and refreshes on the request path instead.
        self._settings = settings.replace(defer_refresh=not background)
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: RoleCredentials | None = None
        self._error: str | None = None
        self._retry_at = 0.0
        # Until the first AssumeRole succeeds every request fails, as in a RoleCredentials'
        # mandatory window: the same backoff (1, 2, 4 ... 30 s, jittered).
        self._backoff = Backoff(MANDATORY_BACKOFF_BASE, MANDATORY_BACKOFF_CAP)

    def build(self) -> RoleCredentials:
        """The credentials (the first call does the first AssumeRole). Raises on failure."""
        with self._lock:
            if self._credentials is not None:
                return self._credentials
            if self._error is not None and time.monotonic() < self._retry_at:
                raise Unavailable(self._error)
            from .. import build as factory
            from ..credentials import failures

            try:
                self._credentials = factory.build(self._settings, clock=self._clock)
            except Exception as error:
                cause, _ = failures.describe_error(error)
                self._error = str(error) if isinstance(error, (ValueError, RuntimeError)) else cause
                # Requests keep coming: retry STS at most that often. Unlike RoleCredentials,
                # a permanent failure (access denied) does not wait the cap at once: nobody
                # in the tree has credentials meanwhile, and a role or trust policy just
                # created or fixed answers AccessDenied until IAM has propagated it.
                self._retry_at = time.monotonic() + self._backoff.next_delay()
                raise Unavailable(self._error) from None
            return self._credentials

    def answer(self, newer_than: float | None) -> dict[str, Any]:
        """The container-protocol answer; waits for a refresh that is due if asked."""
        credentials = self.build()
        credentials.get_frozen_credentials()  # refreshes inside the windows; raises when it must
        snapshot = _snapshot(credentials)
        # Compared as served: whole seconds (what the child holds came from this answer).
        expiry = math.floor(_timestamp(snapshot["expiry_time"]))
        if newer_than is not None and expiry <= newer_than:
            # A child is at its window and the server still has the same credentials:
            # take part in the refresh that is due, or wait for the one under way.
            # Whether one is due is decided under the refresh lock (never from a read
            # before it: a refresh landing in between would make the old credentials
            # look current, and the child back off), and the credentials read again.
            credentials.refresh_in_background()
            snapshot = _snapshot(credentials)
        return endpoint.answer(
            snapshot["access_key"],
            snapshot["secret_key"],
            snapshot["token"],
            _timestamp(snapshot["expiry_time"]),
            issued_at=snapshot.get("issued_at") or credentials.now(),
            account_id=snapshot.get("account_id"),
        )

    def stop(self) -> None:
        if self._credentials is not None:
            self._credentials.stop(timeout=0.2)


class Unavailable(RuntimeError):
    """No credentials to serve right now (the reason, one line, no secret)."""


def _snapshot(credentials: RoleCredentials) -> Mapping[str, Any]:
    # Keys, expiry and issue time that belong together, in one read (not three).
    metadata = credentials.snapshot()
    if metadata is None:
        raise Unavailable("no credentials fetched yet")
    return metadata


def _timestamp(expiry: Any) -> float:
    if isinstance(expiry, datetime):
        return expiry.timestamp()
    from dateutil.parser import isoparse

    return isoparse(str(expiry)).timestamp()
