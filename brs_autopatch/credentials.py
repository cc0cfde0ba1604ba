"""RoleCredentials: botocore's DeferredRefreshableCredentials with a better refresh policy.

botocore keeps doing what it does well (the refresh lock, advisory vs mandatory
refresh, frozen credentials for signing). This subclass adds, around the
``refresh_using`` callback botocore calls under its lock:

* windows scaled to each credential's lifetime (:mod:`brs_autopatch.refresh`);
* static stability: a failed refresh while the current credentials are still good
  keeps serving them and backs off, instead of calling STS on every request;
* a fast path: a UTC deadline check instead of ``datetime.now(tzlocal())`` per request;
* an optional background refresher (``defer_refresh=False``) that renews ahead of the
  advisory window so no request waits on STS;
* fork safety: the refresh lock, the STS client and the refresher thread are
  recreated in a forked child;
* an optional cross-process file cache (:mod:`brs_autopatch.cache`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.credentials import DeferredRefreshableCredentials, ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError
from dateutil.parser import isoparse

from . import lifecycle, refresh
from .cache import FileCache
from .errors import CredentialRefreshError

logger = logging.getLogger("brs_autopatch")

Fetch = Callable[[], Mapping[str, Any]]
METHOD = "brs-autopatch"


@dataclass
class RefreshStats:
    """Counters for tests, `brs-run --check` and the bench: what happened, not how fast."""

    fetches: int = 0  # successful refreshes (from STS or the file cache)
    cache_hits: int = 0
    failures: int = 0
    request_path_fetches: int = 0  # refreshes that ran on an application thread
    background_fetches: int = 0


class RoleCredentials(DeferredRefreshableCredentials):
    """Refreshing credentials for one role (or one hop of a role chain)."""

    def __init__(
        self,
        fetcher_factory: Callable[[], Fetch],
        *,
        label: str,
        defer_refresh: bool = True,
        advisory_refresh_seconds: int | None = None,
        mandatory_refresh_seconds: int | None = None,
        cache: FileCache | None = None,
        cache_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # One clock for every decision, ours and botocore's (injectable: the tests and
        # the bench simulate hours).
        self._clock = clock
        # The thread running refresh_using (under botocore's lock), else None.
        self._fetching_thread: int | None = None
        super().__init__(refresh_using=self._guarded_fetch, method=METHOD, time_fetcher=self._utcnow)
        self.label = label
        self.stats = RefreshStats()
        self._factory = fetcher_factory
        self._fetcher: Fetch | None = None
        self._windows = (advisory_refresh_seconds, mandatory_refresh_seconds)
        self._cache = cache
        self._cache_key = cache_key
        self._metadata: dict[str, Any] | None = None
        self._expiry_ts = 0.0
        # Before this wall-clock time no request needs to look at expiry at all.
        self._fresh_until = 0.0
        self._retry_after = 0.0
        self._last_error: CredentialRefreshError | None = None
        self._advisory_backoff = refresh.Backoff(refresh.ADVISORY_BACKOFF_BASE, refresh.ADVISORY_BACKOFF_CAP)
        self._mandatory_backoff = refresh.Backoff(
            refresh.MANDATORY_BACKOFF_BASE, refresh.MANDATORY_BACKOFF_CAP
        )
        self._refresher = None if defer_refresh else lifecycle.Refresher(self)
        lifecycle.track(self)
        if self._refresher is not None:
            self.get_frozen_credentials()  # the first AssumeRole happens now; failures raise
            self._refresher.start()

    def __repr__(self) -> str:
        expiry = self.expiry_time.isoformat() if self._metadata else "not fetched yet"
        return f"<RoleCredentials {self.label} expiry={expiry}>"

    def _utcnow(self) -> datetime:
        # botocore's default clock, datetime.now(tzlocal()), costs ~10 us per call; an
        # aware UTC datetime compares the same and costs a fraction of that.
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    # -- the request path ------------------------------------------------------------
    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        if self._fetching_thread is not None and self._fetching_thread == threading.get_ident():
            return self._reentrant_credentials()
        if self._clock() < self._fresh_until:
            frozen: ReadOnlyCredentials = self._frozen_credentials  # type: ignore[attr-defined]
            return frozen
        return super().get_frozen_credentials()

    def frozen_if_fresh(self) -> ReadOnlyCredentials | None:
        """The frozen credentials when no refresh is due, else None. No lock, no I/O.

        For callers that must not block (an event loop): on None, run
        :meth:`get_frozen_credentials` off the loop.
        """
        if self._clock() < self._fresh_until:
            frozen: ReadOnlyCredentials = self._frozen_credentials  # type: ignore[attr-defined]
            return frozen
        return None

    @property
    def expiry_time(self) -> datetime:
        """When the current credentials expire (UTC). Fetches them if never fetched."""
        if self._metadata is None:
            self.get_frozen_credentials()
        return datetime.fromtimestamp(self._expiry_ts, timezone.utc)

    @property
    def windows(self) -> tuple[int, int]:
        """(advisory, mandatory) refresh windows in force, in seconds."""
        return int(self._advisory_refresh_timeout), int(self._mandatory_refresh_timeout)

    # -- refresh_using: botocore calls this under self._refresh_lock -------------------
    def _guarded_fetch(self) -> Mapping[str, Any]:
        self._fetching_thread = threading.get_ident()
        try:
            return self._fetch()
        finally:
            self._fetching_thread = None

    def _reentrant_credentials(self) -> ReadOnlyCredentials:
        # The credential method running on this thread signs a request with the very
        # credentials it is fetching (e.g. boto3.client() in a BRS_CUSTOM_METHOD callable:
        # boto3's default session holds them). botocore's lock is held by this thread, so
        # waiting would deadlock, and the current credentials would assume the role with
        # itself: sign with the method's source credentials instead.
        from . import methods

        frozen = methods.source_credentials()
        if frozen is None:
            # What botocore raises for a request without credentials; the method's
            # failure is then reported as "no source credentials", permanent.
            raise NoCredentialsError()
        return frozen

    def _fetch(self) -> Mapping[str, Any]:
        now = self._clock()
        background = self._refresher is not None and self._refresher.is_current_thread()
        remaining = self._expiry_ts - now if self._metadata is not None else None
        # "Grace": current credentials are good beyond the mandatory window, so a
        # failure here costs nothing but a later retry.
        grace = remaining is not None and remaining > self._mandatory_refresh_timeout
        if now < self._retry_after:
            if grace:
                return self._served_during_backoff(now)
            if self._last_error is not None:
                # A new instance per request: re-raising one object grows its traceback.
                last = self._last_error
                raise CredentialRefreshError(last.role, last.cause, transient=last.transient)
        started = time.monotonic()
        try:
            metadata, source = self._obtain(now, background)
        except Exception as error:
            return self._failed(error, now, grace, remaining)
        self._install(metadata, now)
        self.stats.fetches += 1
        if background:
            self.stats.background_fetches += 1
        else:
            self.stats.request_path_fetches += 1
        advisory, mandatory = self.windows
        logger.info(
            "refreshed credentials for %s (session %s) from %s in %.0f ms: expire %s, "
            "next refresh %s, windows advisory %ss mandatory %ss",
            self.label,
            metadata.get("session_name", "-"),
            source,
            (time.monotonic() - started) * 1000,
            _iso(self._expiry_ts),
            _iso(self.next_refresh_time()),
            advisory,
            mandatory,
        )
        return metadata

    def _obtain(self, now: float, background: bool) -> tuple[dict[str, Any], str]:
        def fetch() -> dict[str, Any]:
            # Built on first need: a process served from the file cache makes no STS client.
            if self._fetcher is None:
                self._fetcher = self._factory()
            return _normalize(self._fetcher(), now)

        if self._cache is None or self._cache_key is None:
            return fetch(), "STS"
        metadata, source = self._cache.fetch(
            self._cache_key, fetch, lambda entry: self._usable_from_cache(entry, now, background)
        )
        if source == "cache":
            self.stats.cache_hits += 1
        return metadata, source

    def _usable_from_cache(self, entry: Mapping[str, Any], now: float, background: bool) -> bool:
        # FileCache validated the entry (cache.valid_entry): both fields parse.
        expiry = isoparse(entry["expiry_time"]).timestamp()
        if expiry <= self._expiry_ts:  # not newer than what we hold: no refresh at all
            return False
        lifetime = expiry - float(entry["issued_at"])
        advisory, _ = refresh.choose_windows(lifetime, *self._windows)
        needed = advisory + (self._lead(advisory) if background else 0)
        return bool(expiry - now > needed)

    def _install(self, metadata: dict[str, Any], now: float) -> None:
        expiry = isoparse(metadata["expiry_time"]).timestamp()
        lifetime = expiry - float(metadata.get("issued_at", now))
        advisory, mandatory = refresh.choose_windows(lifetime, *self._windows)
        # Per-instance windows: the same attributes botocore's constructor sets from
        # advisory_timeout/mandatory_timeout (DeferredRefreshableCredentials takes none).
        self._advisory_refresh_timeout = advisory
        self._mandatory_refresh_timeout = mandatory
        self._metadata = metadata
        self._expiry_ts = expiry
        self._fresh_until = expiry - advisory
        self._retry_after = 0.0
        self._last_error = None
        self._advisory_backoff.reset()
        self._mandatory_backoff.reset()

    def _served_during_backoff(self, now: float) -> Mapping[str, Any]:
        # Returning the current credentials makes botocore keep them without logging a
        # traceback; the fast path skips refresh checks until the retry time.
        self._fresh_until = self._retry_after
        assert self._metadata is not None
        return self._metadata

    def _failed(
        self, error: Exception, now: float, grace: bool, remaining: float | None
    ) -> Mapping[str, Any]:
        cause, permanent = refresh.describe_error(error)
        self.stats.failures += 1
        if grace and remaining is not None:
            delay = self._advisory_backoff.next_delay(permanent=permanent)
            # Always try again before the mandatory window starts.
            delay = min(delay, max(remaining - self._mandatory_refresh_timeout - 1, 1.0))
            self._retry_after = now + delay
            logger.warning(
                "refresh of %s failed (%s); serving current credentials (valid %.0f s more), "
                "next attempt in %.0f s",
                self.label,
                cause,
                remaining,
                delay,
            )
            return self._served_during_backoff(now)
        delay = self._mandatory_backoff.next_delay(permanent=permanent)
        self._retry_after = now + delay
        self._last_error = CredentialRefreshError(self.label, cause, transient=not permanent)
        logger.warning(
            "refresh of %s failed (%s); requests fail until it succeeds, next attempt in %.0f s",
            self.label,
            cause,
            delay,
        )
        raise self._last_error from error

    # -- lifecycle: see brs_autopatch.lifecycle -------------------------------------
    @staticmethod
    def _lead(advisory: int) -> float:
        """How far ahead of the advisory window the background thread refreshes.

        Any lead works: should STS take longer, requests entering the advisory window
        find the refresh lock taken and keep the current credentials without waiting.
        A short one keeps the background mode from refreshing more often than needed.
        """
        return min(advisory / 10, 30.0)

    def now(self) -> float:
        return self._clock()

    def next_refresh_time(self) -> float:
        """When the next refresh is due: on the request path, or in the background."""
        advisory = self._advisory_refresh_timeout
        if self._refresher is not None:
            return max(self._retry_after, self._expiry_ts - advisory - self._lead(advisory))
        return max(self._retry_after, self._expiry_ts - advisory)

    def refresh_in_background(self) -> None:
        with self._refresh_lock:
            if self._metadata is not None and self._clock() < self.next_refresh_time():
                return  # a request refreshed while this thread waited for the lock
            # botocore's own refresh step, in advisory mode: a failure is logged by
            # _fetch and retried after its backoff; it never kills the thread.
            self._protected_refresh(is_mandatory=False)  # type: ignore[attr-defined]

    @property
    def refresher_thread(self) -> threading.Thread | None:
        """The background refresher thread (``defer_refresh=False``), if running."""
        return self._refresher.thread if self._refresher is not None else None

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the background refresher, if any (also done at interpreter exit)."""
        if self._refresher is not None:
            self._refresher.stop(timeout)

    def after_fork_in_child(self) -> None:
        # The child has one thread. A lock held by another parent thread at fork time
        # would stay held forever, the STS client's sockets belong to the parent, and
        # the refresher thread did not survive the fork.
        self._refresh_lock = threading.Lock()
        self._fetcher = None
        self._fetching_thread = None  # a parent thread's id; a child thread may reuse it
        if self._refresher is not None:
            self._refresher.restart_after_fork()


def _normalize(raw: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A method's answer -> botocore's metadata dict with an ISO-8601 expiry string."""
    metadata = dict(raw)
    expiry = metadata["expiry_time"]
    if isinstance(expiry, datetime):
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=timezone.utc)
        metadata["expiry_time"] = expiry.astimezone(timezone.utc).isoformat()
    # The lifetime (expiry - issued_at) picks the refresh windows, also for readers of
    # the file cache who get the credentials later.
    metadata.setdefault("issued_at", now)
    return metadata


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
