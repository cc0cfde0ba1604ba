"""brs-run's children: the patch waits for the first session, not for botocore.

Every Python process of a launch tree that imports boto3 loads brs_autopatch with
botocore, and most of them (workers, tools, scripts) import boto3 and make no session, or
make it much later. When brs-run checked this process's settings and the program (its
sitecustomize included) has not changed a ``BRS_*`` variable since it started (the
bootstrap's finder answers both: brs_autopatch/bootstrap/sitecustomize.py), nothing is
left to check as botocore arrives:
:func:`arm` registers one botocore initializer, :class:`FirstSession`, and the rest
(reading the settings, logging, the installation, the launcher's fingerprint, the plan
when that differs) runs when the first session is made. ``import boto3`` then costs this
module and the three above it instead of fifteen (docs/bench.md, "brs-run start-up, per
Python child").

A program that changed a ``BRS_*`` variable, a process brs-run did not check, and
``import brs_autopatch`` outside brs-run keep the check as botocore arrives
(brs_autopatch.patch.install).

This module imports nothing of brs_autopatch: what the first session runs is handed to
:func:`arm` by the package (``brs_autopatch.__init__``), and the public ``install()`` /
``unpatch()`` call :func:`settle` first, so that they act on the installation the first
session would have made.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock, get_ident

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    PatchSession = Callable[[Any], None]
    # Called with the FirstSession: the installation made from the environment, adopting
    # it as its botocore initializer; returns how to patch a session, None for "do not".
    Materialize = Callable[["FirstSession"], "PatchSession | None"]

# The attribute that marks the bootstrap's finder on sys.meta_path. The bootstrap runs
# before this package is imported and spells it itself (tests/launch/test_bootstrap.py
# checks the two agree).
FINDER_MARK = "brs_autopatch_finder"

# What the bootstrap handed over (receive): BRS_BOOTSTRAP as this process started with
# it (BRS_PROPAGATE=0 takes it off os.environ), and its finder's "as launched" question.
_bootstrap = ""
_as_launched: Callable[[], bool] | None = None
_pending: FirstSession | None = None


def receive(bootstrap: str, as_launched: Callable[[], bool] | None) -> None:
    """The bootstrap hands over ``BRS_BOOTSTRAP`` and whether the settings are as launched."""
    global _bootstrap, _as_launched
    _bootstrap, _as_launched = bootstrap, as_launched


def bootstrap_value() -> str:
    """``BRS_BOOTSTRAP`` as this process received it ("" if brs-run did not arm it)."""
    return _bootstrap or str(getattr(_finder(), "bootstrap", "") or "")


def launched() -> bool:
    """Whether brs-run's bootstrap armed this process: install with botocore, not before."""
    return bool(bootstrap_value())


def may_defer() -> bool:
    """brs-run checked these settings and the program changed none: wait for a session."""
    as_launched = _as_launched or getattr(_finder(), "as_launched", None)
    if not launched() or as_launched is None:
        return False
    try:
        return bool(as_launched())
    except Exception:  # a bootstrap this package does not understand: check now
        return False


def _finder() -> object | None:
    for finder in sys.meta_path:
        if getattr(finder, FINDER_MARK, False):
            return finder
    return None


class FirstSession:
    """The botocore initializer of a deferred installation.

    The first session it sees makes the installation (which adopts this object as its
    initializer, so botocore's list is never changed while botocore walks it); every
    session, that one included, is then patched with it. Sessions of other threads wait
    for it; a session made while it is being made (botocore's own, for a check) is left
    alone. If making it raises (bad settings, BRS_ON_ERROR=raise) the session fails and
    the next one tries again, as botocore's import does for the check as it arrives.
    """

    def __init__(self, materialize: Materialize) -> None:
        self._materialize = materialize
        self._lock = allocate_lock()
        self._owner: int | None = None
        self._made = False
        self._patch: PatchSession | None = None

    def reset_after_fork(self) -> None:
        # Another thread of the parent may have been making it: the child has no such thread.
        self._lock = allocate_lock()
        self._owner = None

    def settle(self) -> None:
        """Make the installation now, if no session has yet."""
        if self._made or self._owner == get_ident():
            return
        with self._lock:
            if self._made:
                return
            self._owner = get_ident()
            try:
                patch = self._materialize(self)
            finally:
                self._owner = None
            self._patch, self._made = patch, True

    def __call__(self, session: Any) -> None:
        self.settle()
        patch = self._patch
        if patch is not None:
            patch(session)


def arm(botocore: ModuleType, materialize: Materialize) -> None:
    """Register the first-session initializer on botocore (once per process)."""
    global _pending
    if _pending is not None:
        return
    _pending = FirstSession(materialize)
    os.register_at_fork(after_in_child=_pending.reset_after_fork)
    botocore.register_initializer(_pending)


def settle() -> None:
    """An explicit install() or unpatch(): first make what the first session would have."""
    if _pending is not None:
        _pending.settle()
