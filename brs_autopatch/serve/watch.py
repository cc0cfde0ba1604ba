"""Process plumbing for the credential server: outlive nothing, hold nothing, show nothing.

:func:`watcher` says when another process (the program) has ended, however it ended:
a pidfd on Linux >= 5.3 (``os.pidfd_open``: no PID-reuse race, wakes at once),
else polling ``kill(pid, 0)`` and ``/proc`` (a zombie counts as ended);
:func:`first_ended` waits for the first of several.
:func:`detach` lets go of the descriptors the server inherited from brs-run.
:func:`make_private` and :func:`scrub` keep the source secrets away from the program's
user: no ptrace, no ``/proc/PID/environ`` or ``mem``, no secret in the environment block.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

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


def pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it has ended), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def first_ended(pids: Sequence[int], fds: Sequence[int | None], timeout: float) -> int | None:
    """The first of ``pids`` found ended within ``timeout`` s (their ``fds`` from :func:`pidfd`)."""
    if all(fd is not None for fd in fds):
        poller = select.poll()
        for fd in fds:
            assert fd is not None
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}
        return next((pid for pid, fd in zip(pids, fds, strict=True) if fd in ready), None)
    deadline = time.monotonic() + timeout
    while True:
        ended = next((pid for pid in pids if not alive(pid)), None)
        left = deadline - time.monotonic()
        if ended is not None or left <= 0:
            return ended
        time.sleep(min(0.05, left))


def watcher(pid: int) -> Callable[[float], bool]:
    """``wait(timeout) -> True`` once process ``pid`` has ended (a zombie counts as ended)."""
    fd = pidfd(pid)
    if fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return lambda timeout: bool(poller.poll(timeout * 1000))

    def poll(timeout: float) -> bool:
        if not alive(pid):
            return True
        time.sleep(timeout)
        return False

    return poll


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; another user's process counts as running)."""
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


# -- keeping the secrets to ourselves ---------------------------------------------------------

_PR_SET_NAME = 15
_PR_SET_DUMPABLE = 4


def make_private(name: str) -> bool:
    """Not dumpable (Linux): True if done.

    A non-dumpable process cannot be ptraced (gdb, ``process_vm_readv``) nor dumped by
    its own user, and its ``/proc/PID/environ``, ``mem``, ``maps``, ``fd`` belong to root.
    Inherited by fork, reset by execve: the program brs-run becomes is dumpable as ever.
    ``name`` goes to ``/proc/PID/comm`` (ps, top).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        zero = ctypes.c_ulong(0)
        done = libc.prctl(_PR_SET_DUMPABLE, zero, zero, zero, zero) == 0
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode("ascii")[:15]), zero, zero, zero)
    except Exception:  # no libc to load (EMFILE, a static build): the caller goes on
        return False
    return bool(done)


def scrub(title: str) -> bool:
    """Blank the inherited environment block; show ``title`` as the command line.

    A forked process keeps its parent's initial environment block, and that block is
    what ``/proc/PID/environ`` shows (clearing ``os.environ`` does not change it): brs-run's,
    with the source keys. Zeroed in place after ``os.environ`` is emptied (so no
    ``environ`` pointer still leads into it); the argument block (brs-run's command
    line) becomes ``title``. Linux only; True if done.
    """
    found = _memory()
    if found is None:
        return False
    ctypes, (_, _, env_start, env_end) = found
    os.environ.clear()  # unsetenv: libc's environ array lets go of the block's strings
    ctypes.memset(env_start, 0, env_end - env_start)
    return set_title(title)


def set_title(title: str) -> bool:
    """``title`` as this process's command line (``/proc/PID/cmdline``, ps)."""
    found = _memory()
    if found is None:
        return False
    ctypes, (arg_start, arg_end, _, _) = found
    text = title.encode("utf-8", "replace")[: arg_end - arg_start - 1]
    ctypes.memset(arg_start, 0, arg_end - arg_start)
    ctypes.memmove(arg_start, text, len(text))
    return True


def _memory() -> tuple[Any, tuple[int, int, int, int]] | None:
    """ctypes and this process's argument and environment blocks, or None where either is
    missing (not Linux, no /proc, an interpreter without ctypes)."""
    blocks = _blocks()
    if blocks is None:
        return None
    try:
        import ctypes
    except ImportError:
        return None
    return ctypes, blocks


def _blocks() -> tuple[int, int, int, int] | None:
    # Fields 48-51 of proc(5): arg_start, arg_end, env_start, env_end (fields[0] is field 3).
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        arg_start, arg_end, env_start, env_end = (int(fields[n - 3]) for n in (48, 49, 50, 51))
    except (OSError, ValueError, IndexError):
        return None
    if not (0 < arg_start < arg_end and 0 < env_start < env_end):
        return None
    return arg_start, arg_end, env_start, env_end
