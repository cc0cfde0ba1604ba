"""The injected clock of the simulated timelines.

Fake time is real time plus an offset, optionally running faster than real time
(``rate``). It ticks by itself, so code that compares two readings sees time pass
as it does in production, and it jumps forward on :meth:`FakeClock.advance`.

:func:`installed` makes *every* party read this clock, client and server alike:

* botocore: ``botocore.credentials._local_now`` (the module-level clock that the
  native assume-role provider passes as ``time_fetcher`` and that
  ``CachedCredentialFetcher._is_expired`` reads), plus ``_time_fetcher`` on each
  credentials object a candidate built (:func:`attach`), because
  ``RefreshableCredentials`` binds its default ``time_fetcher`` at import time;
* brs_autopatch: each ``RoleCredentials``' injectable ``_clock`` (:func:`attach`; it
  feeds the request fast path, the refresh decisions and botocore's ``time_fetcher``),
  and ``threading`` in the module that runs its background refresher (``Event``
  only: the refresher's sleeps then follow fake time, see :class:`FakeEvent`);
* moto, running *in this process*: ``moto.sts.models.utcnow``, so AssumeRole stamps
  ``Expiration = fake now + DurationSeconds``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import types
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

_real_time = time.time
_real_monotonic = time.monotonic


class FakeClock:
    """Fake wall-clock time: ``base_fake + (real - base_real) * rate``."""

    def __init__(self) -> None:
        now = _real_time()
        # One tuple, replaced atomically, so readers never see half an update.
        self._base: tuple[float, float, float] = (now, now, 1.0)
        self._cond = threading.Condition()
        # Threads sleeping in FakeEvent.wait: thread -> fake deadline.
        self._waiters: dict[threading.Thread, float] = {}
        # Threads the clock woke up (deadline reached) that have not slept again yet.
        self._busy: set[threading.Thread] = set()

    # -- reading -----------------------------------------------------------------------
    def time(self) -> float:
        base_fake, base_real, rate = self._base
        return base_fake + (_real_time() - base_real) * rate

    def utc_now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), timezone.utc)

    def naive_utcnow(self) -> datetime:
        """moto's ``utcnow()`` is naive UTC."""
        return self.utc_now().replace(tzinfo=None)

    @property
    def rate(self) -> float:
        return self._base[2]

    # -- moving ------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to real time, rate 1."""
        with self._cond:
            now = _real_time()
            self._base = (now, now, 1.0)
            self._cond.notify_all()

    def set_rate(self, rate: float) -> None:
        with self._cond:
            now_real = _real_time()
            self._base = (self.time(), now_real, rate)
            self._cond.notify_all()

    def advance(self, seconds: float, *, settle: float = 5.0) -> None:
        """Jump ``seconds`` ahead, waking sleepers on the way as real time would.

        A discrete-event step: while some thread sleeping on a :class:`FakeEvent` has a
        deadline before the target, the clock first moves exactly to that deadline and
        waits (at most ``settle`` real seconds) until every woken thread sleeps again,
        so a background refresh happens at the fake time it was due, not at the next
        request. ``settle=0``: one plain jump, nobody waited for.
        """
        with self._cond:
            target = self.time() + seconds
            if settle > 0:
                for _ in range(10_000):  # bounded: every step moves the clock forward
                    due = [d for d in self._waiters.values() if d <= target]
                    if not due:
                        break
                    self._jump_to(min(due))
                    self._settle(settle)
            self._jump_to(target)
            if settle > 0:
                self._settle(settle)

    def _jump_to(self, fake_ts: float) -> None:
        base_fake, base_real, rate = self._base
        self._base = (base_fake + max(0.0, fake_ts - self.time()), base_real, rate)
        self._cond.notify_all()

    def _settle(self, settle: float) -> None:
        """Wait until no sleeper is due and every woken thread sleeps again."""
        end = _real_monotonic() + settle
        while _real_monotonic() < end:
            now = self.time()
            due = any(deadline <= now for deadline in self._waiters.values())
            busy = any(thread.is_alive() for thread in self._busy)
            if not due and not busy:
                return
            self._cond.wait(0.005)

    def advance_to(self, fake_ts: float, *, settle: float = 5.0) -> None:
        self.advance(max(0.0, fake_ts - self.time()), settle=settle)

    # -- sleeping (FakeEvent) ----------------------------------------------------------
    def _wait(self, event: FakeEvent, timeout: float | None) -> bool:
        me = threading.current_thread()
        with self._cond:
            self._busy.discard(me)
            deadline = None if timeout is None else self.time() + timeout
            if deadline is not None:
                self._waiters[me] = deadline
            self._cond.notify_all()
            try:
                while not event._flag:
                    if deadline is None:
                        self._cond.wait(0.05)
                        continue
                    left = deadline - self.time()
                    if left <= 0:
                        self._busy.add(me)  # woken by the clock: it has work to do
                        return False
                    self._cond.wait(min(left / max(self.rate, 1e-9), 0.05))
                return True
            finally:
                self._waiters.pop(me, None)
                self._cond.notify_all()

    def _set(self, event: FakeEvent) -> None:
        with self._cond:
            event._flag = True
            self._cond.notify_all()

    def forget(self) -> None:
        """Drop the bookkeeping of threads that stopped."""
        with self._cond:
            self._busy = {t for t in self._busy if t.is_alive()}
            self._waiters = {t: d for t, d in self._waiters.items() if t.is_alive()}


class FakeEvent:
    """``threading.Event`` whose ``wait(timeout)`` counts fake seconds."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._clock._set(self)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        return self._clock._wait(self, timeout)


def attach(clock: FakeClock, credentials: Any) -> None:
    """Point one credentials object at the fake clock.

    brs_autopatch's ``RoleCredentials`` reads one injectable clock (``_clock``, epoch
    seconds) for everything; botocore's classes read ``_time_fetcher`` (a datetime).
    """
    if hasattr(credentials, "_clock"):
        credentials._clock = clock.time
    elif hasattr(credentials, "_time_fetcher"):
        credentials._time_fetcher = clock.utc_now


# Modules whose ``threading.Event`` sleeps the background refresher (one or the other,
# depending on the brs_autopatch version).
_REFRESHER_MODULES = ("brs_autopatch.credentials.lifecycle", "brs_autopatch.credentials.engine")


@contextlib.contextmanager
def installed(clock: FakeClock) -> Iterator[FakeClock]:
    """Make botocore, brs_autopatch and the in-process moto read ``clock``."""
    import importlib

    import botocore.credentials
    import moto.sts.models

    fake_threading = types.ModuleType("threading")
    fake_threading.__dict__.update(threading.__dict__)
    fake_threading.Event = lambda: FakeEvent(clock)  # type: ignore[attr-defined]
    patches: list[tuple[Any, str, Any]] = [
        (botocore.credentials, "_local_now", clock.utc_now),
        (moto.sts.models, "utcnow", clock.naive_utcnow),
    ]
    for name in _REFRESHER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "threading", None) is threading:
            patches.append((module, "threading", fake_threading))
    saved = [(target, name, getattr(target, name)) for target, name, _ in patches]
    for target, name, value in patches:
        setattr(target, name, value)
    try:
        yield clock
    finally:
        for target, name, value in saved:
            setattr(target, name, value)
