"""Process lifecycle of refreshing credentials: background thread, fork, interpreter exit.

Kept apart from the refresh policy in :mod:`brs_autopatch.credentials.engine`: this module
knows about threads and processes, not about STS.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol


class Owner(Protocol):
    """What the refresher and the fork handler need from a credentials object."""

    label: str

    def next_refresh_time(self) -> float: ...
    def now(self) -> float: ...
    def refresh_in_background(self) -> None: ...
    def after_fork_in_child(self) -> None: ...
    def stop(self, timeout: float = 1.0) -> None: ...


class Refresher:
    """One daemon thread renewing one credentials object ahead of its refresh window."""

    # Longest sleep between looks at the clock, so clock jumps (suspend, NTP) are
    # noticed within a minute. The tests shorten it to follow a simulated clock.
    max_sleep = 60.0

    # After an unexpected error in a refresh, wait this long before the next look.
    error_pause = 5.0

    def __init__(self, owner: Owner) -> None:
        self._owner = weakref.ref(owner)  # the thread must not keep its owner alive
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        # A dropped owner (RefreshableSession garbage-collected) stops its thread at
        # once, not at the thread's next look at the clock (up to max_sleep later). The
        # finalizer holds this list, not self: the event is replaced on restart.
        self._events = [self._stop]
        weakref.finalize(owner, _set_event, self._events)
        # Two request threads of a forked child may resume the thread at once: one starts it.
        self._start_lock = threading.Lock()
        # Forked child: the thread is to start again at the owner's next use (resume()).
        self.suspended = False

    def start(self) -> None:
        with self._start_lock:
            self.suspended = False
            if self.thread is not None and self.thread.is_alive():
                return
            owner = self._owner()
            if owner is None:
                return
            self._stop = threading.Event()
            self._events[:] = [self._stop]
            self.thread = threading.Thread(target=self._run, name=f"brs-refresh {owner.label}", daemon=True)
            self.thread.start()

    def is_current_thread(self) -> bool:
        return self.thread is threading.current_thread()

    def _run(self) -> None:
        while not self._stop.is_set():
            owner = self._owner()
            if owner is None:
                return
            wait = owner.next_refresh_time() - owner.now()
            if wait > 0:
                del owner
                self._stop.wait(min(wait, self.max_sleep))
                continue
            try:
                owner.refresh_in_background()
            except Exception as error:
                # Never let the thread die silently: a refresh failure is normally
                # handled (and logged) by the owner; anything else is a bug worth a line.
                logger.warning(
                    "background refresh of %s failed unexpectedly (%s); retrying in %.0f s",
                    owner.label,
                    type(error).__name__,
                    self.error_pause,
                )
                del owner
                self._stop.wait(self.error_pause)
                continue
            del owner

    def stop(self, timeout: float) -> None:
        self.suspended = False  # stopped stays stopped, in a forked child too
        self._stop.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def after_fork_in_child(self) -> None:
        """Forget the parent's thread; :meth:`resume` starts the child's own.

        Not started here: at-fork handlers run one after another in the child, and one
        registered after ours (another module's, a library's, logging's when it was
        imported later) may still be about to reset a lock that the parent's threads
        held. A thread started now can take such a lock first and wait on it forever
        (issue 20: the cache's mutex, held by the parent's fetch, hung the child).
        """
        # Not stopped: running, or about to be started by the parent's thread that was
        # inside RoleCredentials.start() (its first fetch) when the fork came.
        running = not self._stop.is_set()
        self.thread = None
        # The parent's threads may have held these inside set()/wait() at fork time.
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._events[:] = [self._stop]
        self.suspended = running

    def resume(self) -> None:
        """In a forked child, start the thread the parent had (the first use does)."""
        if self.suspended:
            self.start()


def _set_event(events: list[threading.Event]) -> None:
    for event in events:
        event.set()


logger = logging.getLogger("brs_autopatch")
_live: weakref.WeakSet[Owner] = weakref.WeakSet()


def track(owner: Owner) -> None:
    """Give ``owner`` fork and exit handling for as long as it lives."""
    _live.add(owner)


def _each(action: Callable[[Owner], None]) -> Callable[[], None]:
    def run() -> None:
        for owner in list(_live):
            action(owner)

    return run


# gunicorn --preload, multiprocessing fork, os.fork(): reset in the child what the
# parent's threads may have held; start no thread (see Refresher.after_fork_in_child).
# (uWSGI without --lazy-apps skips these handlers.)
os.register_at_fork(after_in_child=_each(lambda owner: owner.after_fork_in_child()))
atexit.register(_each(lambda owner: owner.stop(timeout=0.5)))
