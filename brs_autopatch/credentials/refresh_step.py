"""One refresh, as botocore's ``refresh_using`` callback runs it under its refresh lock.

Obtain an answer (STS through the method, or the cross-process file cache), check that
it can be used, install it with its schedule, remember the keys we issued; and when it
fails, the static-stability policy: keep serving the current credentials with a backoff
while they are good, else make requests fail with one
:class:`~brs_autopatch.errors.CredentialRefreshError` until a retry succeeds.

A mixin of :class:`~brs_autopatch.credentials.engine.RoleCredentials` and nothing
else: the request path, the fast path and the lifecycle stay there. The attributes
below are RoleCredentials' own, declared here for the type checker.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CredentialRefreshError
from ..util import redact
from . import answers, failures, issued
from .schedule import Schedule

if TYPE_CHECKING:
    from .backoff import Backoff
    from .cache import FileCache
    from .lifecycle import Refresher

logger = logging.getLogger("brs_autopatch")

Fetch = Callable[[], Mapping[str, Any]]


@dataclass
class RefreshStats:
    """Counters for tests, `brs-run --check` and the bench: what happened, not how fast."""

    fetches: int = 0  # successful refreshes (from STS or the file cache)
    cache_hits: int = 0
    failures: int = 0
    request_path_fetches: int = 0  # refreshes that ran on an application thread
    background_fetches: int = 0


class RefreshStep:
    """The refresh side of RoleCredentials (see the module docstring)."""

    label: str
    stats: RefreshStats
    _clock: Callable[[], float]
    _factory: Callable[[], Fetch]
    _fetcher: Fetch | None
    _windows: tuple[int | None, int | None]
    _cache: FileCache | None
    _cache_key: str | None
    _refresher: Refresher | None
    _rng: random.Random
    _jitter: float
    _schedule: Schedule
    _advisory_refresh_timeout: float
    _mandatory_refresh_timeout: float
    _metadata: dict[str, Any] | None
    _expiry_ts: float
    _pending: tuple[str | None, float]
    _retry_after: float
    _last_error: CredentialRefreshError | None
    _advisory_backoff: Backoff
    _mandatory_backoff: Backoff
    _issued: deque[str]

    @property
    def windows(self) -> tuple[int, int]:
        """(advisory, mandatory) windows in force for the current credentials, in seconds.

        The advisory one is this refresh's jittered point inside the schedule's window
        (see :attr:`schedule` for the nominal values).
        """
        return round(self._advisory_refresh_timeout), round(self._mandatory_refresh_timeout)

    def next_refresh_time(self) -> float:
        """When the next refresh is due: on the request path, or in the background."""
        due = self._schedule.refresh_at(self._expiry_ts, self._jitter, background=self._refresher is not None)
        return max(self._retry_after, due)

    def _fetch(self) -> Mapping[str, Any]:
        now = self._clock()
        background = self._refresher is not None and self._refresher.is_current_thread()
        remaining = self._expiry_ts - now if self._metadata is not None else None
        # "Grace": current credentials are good beyond the mandatory window, so a
        # failure here costs nothing but a later retry.
        grace = remaining is not None and remaining > self._schedule.mandatory
        if now < self._retry_after:
            if grace:
                return self._served_during_backoff()
            if self._last_error is not None:
                # A new instance per request: re-raising one object grows its traceback.
                last = self._last_error
                raise CredentialRefreshError(last.role, last.cause, transient=last.transient)
        started = time.monotonic()
        try:
            metadata, source = self._obtain(now, background)
            expiry, chosen = answers.plan(metadata, now, self._windows)
        except Exception as error:
            return self._failed(error, now, grace, remaining)
        self._install(metadata, expiry, chosen)
        self.stats.fetches += 1
        if background:
            self.stats.background_fetches += 1
        else:
            self.stats.request_path_fetches += 1
        logger.info(
            "refreshed credentials for %s (session %s) from %s in %.0f ms: expire %s, "
            "next refresh %s, windows advisory %ss mandatory %ss",
            self.label,
            metadata.get("session_name", "-"),
            source,
            (time.monotonic() - started) * 1000,
            answers.iso(self._expiry_ts),
            answers.iso(self.next_refresh_time()),
            *self.windows,
        )
        return metadata

    def _obtain(self, now: float, background: bool) -> tuple[dict[str, Any], str]:
        def fetch() -> dict[str, Any]:
            # Built on first need: a process served from the file cache makes no STS client.
            if self._fetcher is None:
                self._fetcher = self._factory()
            return answers.normalize(self._fetcher(), now)

        if self._cache is None or self._cache_key is None:
            return fetch(), "STS"
        metadata, source = self._cache.fetch(
            self._cache_key, fetch, lambda entry: self._usable_from_cache(entry, now, background)
        )
        if source == "cache":
            self.stats.cache_hits += 1
        return metadata, source

    def _usable_from_cache(self, entry: Mapping[str, Any], now: float, background: bool) -> bool:
        try:
            expiry, chosen = answers.plan(entry, now, self._windows)
        except Exception:
            return False  # expired, or not a usable entry: a miss
        if expiry <= self._expiry_ts:  # not newer than what we hold: no refresh at all
            return False
        return bool(now < chosen.refresh_at(expiry, self._jitter, background=background))

    def _install(self, metadata: dict[str, Any], expiry: float, chosen: Schedule) -> None:
        self._schedule = chosen
        # A fresh random point in the window for every refresh: a fleet started in the
        # same second drifts apart instead of calling STS in the same second forever.
        self._jitter = self._rng.random()
        # Per-instance windows: the attributes botocore's constructor sets from
        # advisory_timeout/mandatory_timeout (DeferredRefreshableCredentials takes none).
        self._advisory_refresh_timeout = chosen.advisory_at(self._jitter)
        self._mandatory_refresh_timeout = chosen.mandatory
        self._metadata = metadata
        redact.remember(metadata.get("secret_key"), metadata.get("token"))
        self._expiry_ts = expiry
        self._pending = (metadata["access_key"], expiry - self._advisory_refresh_timeout)
        self._remember_issued(metadata["access_key"], metadata["secret_key"], metadata.get("token"))
        self._retry_after = 0.0
        self._last_error = None
        self._advisory_backoff.reset()
        self._mandatory_backoff.reset()

    def _remember_issued(self, access_key: str, secret_key: str, token: str | None) -> None:
        # For brs_autopatch.patch.adopt: which object issued keys a program may copy around
        # (a keyed hash of all three: see brs_autopatch.credentials.issued).
        if access_key in self._issued:
            return
        if len(self._issued) == self._issued.maxlen:
            issued.forget(self._issued[0])
        self._issued.append(access_key)
        issued.remember(access_key, secret_key, token, self)

    def _served_during_backoff(self) -> Mapping[str, Any]:
        # Returning the current credentials makes botocore keep them without logging a
        # traceback; the fast path skips refresh checks until the retry time.
        assert self._metadata is not None
        self._pending = (self._metadata["access_key"], self._retry_after)
        return self._metadata

    def _failed(
        self, error: Exception, now: float, grace: bool, remaining: float | None
    ) -> Mapping[str, Any]:
        cause, permanent = failures.describe_error(error, failures.where(self._fetcher))
        self.stats.failures += 1
        if grace and remaining is not None:
            delay = self._advisory_backoff.next_delay(permanent=permanent)
            # Always try again before the mandatory window starts.
            delay = min(delay, max(remaining - self._schedule.mandatory - 1, 1.0))
            self._retry_after = self._clock() + delay  # from when it failed: the attempt took time
            logger.warning(
                "refresh of %s failed (%s); serving current credentials (valid %.0f s more), "
                "next attempt in %.0f s",
                self.label,
                cause,
                remaining,
                delay,
            )
            return self._served_during_backoff()
        delay = self._mandatory_backoff.next_delay(permanent=permanent)
        self._retry_after = self._clock() + delay  # from when it failed: the attempt took time
        self._last_error = CredentialRefreshError(self.label, cause, transient=not permanent)
        logger.warning(
            "refresh of %s failed (%s); requests fail until it succeeds, next attempt in %.0f s",
            self.label,
            cause,
            delay,
        )
        # Not chained to an error whose text is an STS answer's body (a parser error).
        raise self._last_error from failures.chainable(error)
