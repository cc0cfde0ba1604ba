"""The token directory of an endpoint: made private, marked with its program, swept.

Every endpoint (``brs-run --serve``'s server, the in-process one of ``BRS_SERVE``) has a
0700 directory named ``brs-serve-*`` (:data:`PREFIX`) in the temporary directory,
holding the 0600 token file and the program's copies of the AWS files
(:mod:`brs_autopatch.serve.start`) and a restarted server's cache
(:mod:`brs_autopatch.serve.supervisor`). The server and its supervisor remove it when
the program ends; if both were killed, the next ``brs-run --serve`` of the same user
removes it (:func:`sweep`), recognising it by its name and the :data:`OWNER_FILE` mark.
One module, so that what :func:`make` names is what :func:`sweep` looks for.

Not here: what goes in it, when it is removed (the processes that own it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile

from .watch import alive

PREFIX = "brs-serve-"
OWNER_FILE = "program"  # in the directory: the program's PID, for sweep()


def make() -> str:
    """A new private (0700) directory; raises OSError."""
    return tempfile.mkdtemp(prefix=PREFIX)


def mark(workdir: str, program: int) -> None:
    """Say whose directory this is, for a later :func:`sweep`."""
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(workdir, OWNER_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"{program}\n")


def sweep(workdir: str) -> int:
    """Remove this user's token directories left by trees whose program has ended.

    Only when both the server and its supervisor were killed (``SIGKILL``) does a
    directory outlive its program; the next ``brs-run --serve`` in the same temporary
    directory removes it. A directory counts only if it is a real directory (no
    symlink), ours, named ``brs-serve-*`` (:data:`PREFIX`) and marked with its program's
    PID; a PID that is alive (or reused) keeps it. Returns how many were removed.
    """
    parent, name = os.path.split(workdir)
    removed = 0
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for count, entry in enumerate(entries):
            if count > 10_000:
                break
            if not entry.name.startswith(PREFIX) or entry.name == name:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                    continue
                with open(os.path.join(entry.path, OWNER_FILE), encoding="ascii") as handle:
                    pid = int(handle.read(32).strip())
            except (OSError, ValueError):
                continue
            if pid > 0 and not alive(pid):
                shutil.rmtree(entry.path, ignore_errors=True)  # fd-based: no symlink is followed
                removed += 1
    return removed
