"""RoleCredentials: botocore's DeferredRefreshableCredentials with a better refresh policy.

botocore keeps doing what it does well (the refresh lock, advisory vs mandatory
refresh, frozen credentials for signing). This subclass adds, around the
``refresh_using`` callback botocore calls under its lock:

* windows scaled to each credential's lifetime, with jitter (:mod:`brs_autopatch.credentials.schedule`);
* static stability: a failed refresh while the current credentials are still good
  keeps serving them and backs off, instead of calling STS on every request;
* a fast path: a UTC deadline check instead of ``datetime.now(tzlocal())`` per request,
  reading the frozen credentials and their deadline as one published pair;
* answers that expire before they can be used count as failed refreshes (backoff);
* an optional background refresher (``defer_refresh=False``) that renews ahead of the
  advisory window so no request waits on STS;
* fork safety: the refresh lock and the STS client are recreated in a forked child,
  and the refresher thread starts again at the child's first use of the credentials;
* an optional cross-process file cache (:mod:`brs_autopatch.credentials.cache`).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from botocore.credentials import DeferredRefreshableCredentials, ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from ..errors import CredentialRefreshError
from . import answers, botocore_logging, issued, lifecycle, reentry, schedule
from . import backoff as refresh
from .cache import FileCache
from .refresh_step import Fetch, RefreshStats, RefreshStep
from .schedule import Schedule

botocore_logging.quiet_our_refresh_failures()

METHOD = "brs-autopatch"


class RoleCredentials(RefreshStep, DeferredRefreshableCredentials):
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
        previous: RoleCredentials | None = None,
        rng: random.Random | None = None,
    ) -> None:
        # One clock for every decision, ours and botocore's (injectable: the tests and
        # the bench simulate hours).
        self._clock = clock
        # The thread running refresh_using (under botocore's lock), else None.
        self._fetching_thread: int | None = None
        super().__init__(refresh_using=self._guarded_fetch, method=METHOD, time_fetcher=self._utcnow)
        self.label = label
        # The setting that limits the credentials' lifetime, for a presigned URL's warning
        # (brs_autopatch.credentials.presign); the factory names it.
        self.presign_advice = "raise the role's session duration"
        self.stats = RefreshStats()
        self._factory = fetcher_factory
        self._fetcher: Fetch | None = None
        self._windows = (advisory_refresh_seconds, mandatory_refresh_seconds)
        self._cache = cache
        self._cache_key = cache_key
        # The previous hop of a role chain: started and stopped with this one.
        self._previous = previous
        self._rng = rng or random.Random()
        self._jitter = self._rng.random()
        self._schedule = schedule.choose(schedule.MIN_USABLE_SECONDS * 4)
        self._advisory_refresh_timeout = self._schedule.advisory
        self._mandatory_refresh_timeout = self._schedule.mandatory
        self._metadata: dict[str, Any] | None = None
        self._expiry_ts = 0.0
        # What the fast path reads: frozen credentials and, until when no request needs
        # to look at expiry, as ONE tuple, replaced only after botocore stored the
        # credentials it belongs to (see _publish).
        self._published: tuple[ReadOnlyCredentials | None, float] = (None, 0.0)
        # (access key, deadline) decided by the last _fetch, waiting to be published.
        self._pending: tuple[str | None, float] = (None, 0.0)
        self._retry_after = 0.0
        self._last_error: CredentialRefreshError | None = None
        self._advisory_backoff = refresh.Backoff(refresh.ADVISORY_BACKOFF_BASE, refresh.ADVISORY_BACKOFF_CAP)
        self._mandatory_backoff = refresh.Backoff(
            refresh.MANDATORY_BACKOFF_BASE, refresh.MANDATORY_BACKOFF_CAP
        )
        self._issued: deque[str] = deque(maxlen=issued.PER_OWNER)
        self._refresher = None if defer_refresh else lifecycle.Refresher(self)
        lifecycle.track(self)

    def start(self) -> None:
        """``defer_refresh=False``: fetch now (raising on failure) and refresh in the background.

        The refresher starts even when the first fetch fails: it retries with backoff,
        so a program that survives a failed start recovers without calling STS per request.
        Does nothing for lazy (``defer_refresh=True``) credentials.
        """
        if self._previous is not None:
            self._previous.start()
        if self._refresher is None:
            return
        try:
            self.get_frozen_credentials()
        finally:
            self._refresher.start()

    def __repr__(self) -> str:
        expiry = answers.iso(self._expiry_ts) if self._metadata else "not fetched yet"
        return f"<RoleCredentials {self.label} expiry={expiry}>"

    def _utcnow(self) -> datetime:
        # botocore's default clock, datetime.now(tzlocal()), costs ~10 us per call; an
        # aware UTC datetime compares the same and costs a fraction of that.
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    # -- the request path ------------------------------------------------------------
    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        if self._fetching_thread is not None and self._fetching_thread == threading.get_ident():
            return self._reentrant_credentials()
        frozen, fresh_until = self._published
        if self._clock() < fresh_until and frozen is not None:
            return frozen
        try:
            result: ReadOnlyCredentials = super().get_frozen_credentials()
            self._publish()
        finally:
            refresher = self._refresher
            if refresher is not None and refresher.suspended:
                refresher.resume()  # a forked child's first use (even a failed one)
        return result

    def frozen_if_fresh(self) -> ReadOnlyCredentials | None:
        """The frozen credentials when no refresh is due, else None. No lock, no I/O.

        For callers that must not block (an event loop): on None, run
        :meth:`get_frozen_credentials` off the loop.
        """
        frozen, fresh_until = self._published
        if self._clock() < fresh_until:
            return frozen
        return None

    def _publish(self) -> None:
        # Runs after botocore's refresh returned, so _frozen_credentials is what botocore
        # stored. The deadline is published only together with the credentials it was
        # computed for: a request never gets None (first fetch) or the previous,
        # possibly expired key with a new deadline (recovery after an outage).
        frozen: ReadOnlyCredentials | None = getattr(self, "_frozen_credentials", None)
        key, fresh_until = self._pending
        if frozen is not None and frozen.access_key == key:
            self._published = (frozen, fresh_until)

    def snapshot(self) -> Mapping[str, Any] | None:
        """The current credentials' metadata (keys, expiry, issue time) as one consistent
        read, or None before the first fetch. Never fetches. For the credential server."""
        return self._metadata

    def ensure_lasting(self, seconds: float, slack: float) -> float:
        """Refresh now if that makes the credentials last ``seconds`` more; for presigned URLs.

        A URL signed with temporary credentials stops working when they expire, whatever
        its ExpiresIn. No STS call when the current credentials last long enough, or
        when a refresh would gain at most ``slack`` seconds (they are about as fresh as
        the role gives: a 1-hour URL signed with 1-hour credentials). Otherwise one
        refresh under botocore's lock: threads waiting on it re-check and sign with its
        result. A failed refresh is logged by :meth:`_fetch` and leaves the current
        credentials in place. Returns the seconds the signing credentials have left.
        """
        self.get_frozen_credentials()  # fetched, and not inside a window
        if self._fetching_thread == threading.get_ident() or not self._would_gain(seconds, slack):
            return self._expiry_ts - self._clock()
        with self._refresh_lock:
            if self._would_gain(seconds, slack):  # not done by the thread we waited for
                # botocore's refresh step, in advisory mode, as the background refresher
                # does: a failure is logged and backed off, never raised from here.
                self._protected_refresh(is_mandatory=False)  # type: ignore[attr-defined]
        self._publish()
        return self._expiry_ts - self._clock()

    def _would_gain(self, seconds: float, slack: float) -> bool:
        if self._metadata is None:
            return False
        now = self._clock()
        left = self._expiry_ts - now
        if left >= seconds - slack or now < self._retry_after:
            return False  # long enough, or backing off after a failed refresh
        # What the role gave last time is what a refresh gives (STS answers the same
        # DurationSeconds): refresh only if that beats what is left by more than slack.
        lifetime = self._expiry_ts - float(self._metadata.get("issued_at", now))
        return min(lifetime, seconds) - left > slack

    @property
    def expiry_time(self) -> datetime:
        """When the current credentials expire (UTC). Fetches them if never fetched."""
        if self._metadata is None:
            self.get_frozen_credentials()
        return datetime.fromtimestamp(self._expiry_ts, timezone.utc)

    @property
    def schedule(self) -> Schedule:
        """The full schedule in force (advisory, mandatory, background lead)."""
        return self._schedule

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
        frozen = reentry.source_credentials()
        if frozen is None:
            # What botocore raises for a request without credentials; the method's
            # failure is then reported as "no source credentials", permanent.
            raise NoCredentialsError()
        return frozen

    # -- lifecycle: see brs_autopatch.credentials.lifecycle -------------------------------------
    def now(self) -> float:
        return self._clock()

    def refresh_in_background(self) -> None:
        with self._refresh_lock:
            if self._metadata is not None and self._clock() < self.next_refresh_time():
                return  # a request refreshed while this thread waited for the lock
            # botocore's own refresh step, in advisory mode: a failure is logged by
            # _fetch and retried after its backoff; it never kills the thread.
            self._protected_refresh(is_mandatory=False)  # type: ignore[attr-defined]
        self._publish()

    @property
    def refresher_thread(self) -> threading.Thread | None:
        """The background refresher thread (``defer_refresh=False``), if running."""
        return self._refresher.thread if self._refresher is not None else None

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the background refresher, if any, and the previous hop's (also at exit)."""
        if self._refresher is not None:
            self._refresher.stop(timeout)
        if self._previous is not None:
            self._previous.stop(timeout)

    def after_fork_in_child(self) -> None:
        # The child has one thread. A lock held by another parent thread at fork time
        # would stay held forever, the STS client's sockets belong to the parent, and
        # the refresher thread did not survive the fork. The child draws its own jitter.
        self._refresh_lock = threading.Lock()
        self._fetcher = None
        self._fetching_thread = None  # a parent thread's id; a child thread may reuse it
        self._rng = random.Random()
        self._redraw_jitter()
        if self._refresher is not None:
            self._refresher.after_fork_in_child()
            if self._refresher.suspended:
                # The refresher starts again at the child's first use of the credentials,
                # after every at-fork handler ran (see Refresher.after_fork_in_child): send
                # that use off the fast path. _publish() restores the deadline.
                self._published = (self._published[0], 0.0)

    def _redraw_jitter(self) -> None:
        # Pre-forked workers hold the credentials the parent fetched: with the parent's
        # jitter they would all refresh them in the same second. A new point in the same
        # window; the published deadline moves with it unless a backoff set it.
        previous = self._advisory_refresh_timeout
        self._jitter = self._rng.random()
        if self._metadata is None:
            return
        self._advisory_refresh_timeout = self._schedule.advisory_at(self._jitter)
        old_deadline = self._expiry_ts - previous
        deadline = self._expiry_ts - self._advisory_refresh_timeout
        key, pending_until = self._pending
        if pending_until == old_deadline:
            self._pending = (key, deadline)
        frozen, fresh_until = self._published
        if frozen is not None and fresh_until == old_deadline:
            self._published = (frozen, deadline)
