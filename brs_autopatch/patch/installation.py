"""One installation of the patch: its settings and the credentials it owns.

``install()`` creates one; ``unpatch()`` deactivates it and stops what it owns. The
credentials are built once, on the first session that asks, under a lock that is held
for the build only (no network I/O) and is renewed in a forked child; the first fetch
of ``defer_refresh=False`` happens outside it. A build that failed is not retried by
every new session: the credentials object keeps its own backoff.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from ..config.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..credentials.engine import RoleCredentials
    from ..plan import Plan


class Installation:
    """What one install() put in place, and the credentials every patched session shares."""

    def __init__(self, settings: Settings, generation: int) -> None:
        self.settings = settings
        self.generation = generation
        self.active = True
        self.warned = False
        self.initializer: Any = None
        self.saved_default_session: Any = None
        # The validation plan, made when botocore arrived (patch.py): built from it,
        # nothing is checked twice.
        self.plan: Plan | None = None
        # The environment the settings were read from (None: given as Settings).
        self.environ: Mapping[str, str] | None = None
        # Where the STS client gets the source credentials (None: botocore's chain, read
        # when needed). BRS_SERVE in-process sets it: the environment no longer has them.
        self.source: Callable[[], Any] | None = None
        self._credentials: RoleCredentials | None = None
        self._lock = threading.Lock()
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Installation role={self.settings.role_arn} active={self.active}>"

    def credentials(self) -> RoleCredentials:
        """The shared credentials, built on first use. Raises ConfigError for bad settings,
        and (``defer_refresh=False``) CredentialRefreshError if the very first fetch fails."""
        built = self._credentials
        if built is not None:
            return built
        with self._lock:
            if self._credentials is None:
                from .. import build as factory
                from ..credentials import sources

                source = self.source or sources.plain_session
                if self.plan is not None:
                    built = factory.build_from_plan(self.plan, source=source, start=False)
                else:
                    built = factory.build(self.settings, source=source, start=False)
                self._credentials = built
            else:
                return self._credentials
        # Outside the lock: a fork or a slow STS during this fetch blocks nobody else on
        # this lock; other threads wait on the credentials' own (fork-safe) refresh lock.
        built.start()
        return built

    def existing(self) -> RoleCredentials | None:
        """The shared credentials if built already; never builds."""
        return self._credentials

    def stop(self) -> None:
        """Deactivate: new lookups fall back to botocore; background threads stop."""
        self.active = False
        credentials, self._credentials = self._credentials, None
        if credentials is not None:
            credentials.stop()

    def _after_fork_in_child(self) -> None:
        # Another parent thread may have held the lock at fork time (a build in
        # progress): the child gets a fresh one. Its credentials reset themselves.
        self._lock = threading.Lock()


_live: weakref.WeakSet[Installation] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for installation in list(_live):
        installation._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork)
