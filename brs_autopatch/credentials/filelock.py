"""An exclusive lock per file name that holds across threads, processes and fork.

Used by the credential cache (:mod:`brs_autopatch.credentials.cache`) so that processes missing
one entry together make one STS call. Why it is built this way:

* POSIX record locks (``lockf``) belong to a process: a forked child does not
  inherit one a parent thread holds. (An ``flock`` belongs to the open file, which
  the child shares: the lock then stays held until the child exits, and every process
  using the cache blocks.) The kernel drops record locks when their process dies.
* Record locks do not exclude the threads of one process, and closing *any*
  descriptor of the file drops them: a mutex per lock file serialises our threads
  and is the only way to the lock file. A forked child gets fresh mutexes.
* Opens use ``O_NOFOLLOW | O_NONBLOCK`` relative to a directory descriptor and the
  file must be a regular file of ours: a planted symlink creates nothing elsewhere,
  a FIFO blocks nothing. Waits are bounded; the caller is told why it has no lock
  and goes on without one. This module never logs: the caller decides what to say.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

SAFE_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_mutexes: dict[tuple[int, int, str], threading.Lock] = {}
_mutexes_guard = threading.Lock()


def _reset_after_fork() -> None:
    # A parent thread may hold any of these at fork time; the child has no such thread.
    global _mutexes, _mutexes_guard
    _mutexes = {}
    _mutexes_guard = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _mutex_for(key: tuple[int, int, str]) -> threading.Lock:
    with _mutexes_guard:
        return _mutexes.setdefault(key, threading.Lock())


@dataclass
class Outcome(Generic[T]):
    """How :func:`exclusive` ended its wait."""

    held: bool = False  # this thread holds the lock
    served: T | None = None  # what ``peek`` found while waiting (lock not held)
    problem: str | None = None  # why there is no lock: go on without it


@contextlib.contextmanager
def exclusive(dir_fd: int, name: str, timeout: float, peek: Callable[[], T | None]) -> Iterator[Outcome[T]]:
    """Hold the lock file ``name`` in the directory ``dir_fd`` for the ``with`` body.

    While another process holds it, ``peek()`` is asked between tries: a non-None
    answer (say, the entry that process just stored) ends the wait without the lock.
    After ``timeout`` seconds the body runs without the lock (``problem`` says so).
    """
    deadline = time.monotonic() + timeout
    info = os.fstat(dir_fd)
    mutex = _mutex_for((info.st_dev, info.st_ino, name))
    if not mutex.acquire(timeout=timeout):
        # Another thread of ours is stuck in the body. Without the mutex the lock file
        # must not be touched: closing it would drop that thread's lock.
        yield Outcome(problem=f"busy in this process for {timeout:.0f} s")
        return
    try:
        fd, outcome = _lock(dir_fd, name, deadline, timeout, peek)
        try:
            yield outcome
        finally:
            if fd is not None:
                os.close(fd)  # releases the record lock
    finally:
        mutex.release()


def _lock(
    dir_fd: int, name: str, deadline: float, timeout: float, peek: Callable[[], T | None]
) -> tuple[int | None, Outcome[T]]:
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | SAFE_OPEN, 0o600, dir_fd=dir_fd)
    except OSError as error:  # a symlink (ELOOP), a read-only mount, ...
        return None, Outcome(problem=f"unusable ({error.strerror or type(error).__name__})")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            return None, Outcome(problem="not a regular file of ours")
        pause = 0.005
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd, Outcome(held=True)
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                return None, Outcome(problem=f"held for {timeout:.0f} s by another process")
            served = peek()
            if served is not None:
                os.close(fd)  # we hold no lock on it: closing drops nothing
                return None, Outcome(served=served)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    except OSError as error:  # ENOLCK (NFS without a lock daemon), ...
        os.close(fd)
        return None, Outcome(problem=f"cannot be locked ({error.strerror or type(error).__name__})")
    except BaseException:
        os.close(fd)
        raise
