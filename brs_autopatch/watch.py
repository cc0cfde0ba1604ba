"""Process plumbing for the credential server: outlive nothing, hold nothing.

:func:`watcher` says when another process (the program) has ended, however it ended:
a pidfd on Linux >= 5.3 (``os.pidfd_open``: no PID-reuse race, wakes at once),
else polling ``kill(pid, 0)`` and ``/proc`` (a zombie counts as ended).
:func:`detach` lets go of the descriptors the server inherited from brs-run.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable

_STDIO_KEEP = (2,)  # stderr: warnings reach the user; stdout belongs to the program


def detach(keep: set[int]) -> None:
    """stdin and stdout to /dev/null; close every other descriptor but stderr and ``keep``.

    The server must not hold the program's stdout pipe open (a ``$(brs-run ...)``
    would wait for it) nor any descriptor brs-run inherited from its own parent.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    keep = keep | {0, 1, *_STDIO_KEEP}
    try:
        fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def watcher(pid: int) -> Callable[[float], bool]:
    """``wait(timeout) -> True`` once process ``pid`` has ended (a zombie counts as ended)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return lambda timeout: bool(poller.poll(timeout * 1000))

    def poll(timeout: float) -> bool:
        if not _alive(pid):
            return True
        time.sleep(timeout)
        return False

    return poll


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
