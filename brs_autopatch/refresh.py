"""Refresh policy: when to refresh, how long to back off, which failures are transient.

Pure functions and one small class, no I/O, so the policy is unit-tested on its own.

botocore refreshes ``RefreshableCredentials`` 900 s (advisory) and 600 s (mandatory)
before expiry. With 900 s credentials that means on *every* call. We follow the
policy botocore itself is preparing (boto/botocore#3760): a 60 s mandatory window and
an advisory window scaled to each credential's lifetime.
"""

from __future__ import annotations

import random

DEFAULT_MANDATORY_SECONDS = 60

# Backoff after a failed refresh while the current credentials are still good
# ("static stability"): keep serving them and retry later, not on every request.
ADVISORY_BACKOFF_BASE = 15.0
ADVISORY_BACKOFF_CAP = 300.0
# Inside the mandatory window, requests fail; retry STS at most this often.
MANDATORY_BACKOFF_BASE = 1.0
MANDATORY_BACKOFF_CAP = 30.0

def advisory_for_lifetime(lifetime_seconds: float) -> int:
    """The advisory window for credentials valid for ``lifetime_seconds`` when issued.

    <= 20 min -> 5 min, < 90 min -> 15 min, otherwise 60 min: refresh well ahead,
    but never so early that short-lived credentials are refreshed on every call.
    """
    if lifetime_seconds <= 20 * 60:
        return 5 * 60
    if lifetime_seconds < 90 * 60:
        return 15 * 60
    return 60 * 60


def choose_windows(
    lifetime_seconds: float, advisory: int | None = None, mandatory: int | None = None
) -> tuple[int, int]:
    """(advisory, mandatory) seconds for credentials of this lifetime.

    Explicit values win. Whatever the source, the result keeps
    ``0 < mandatory < advisory < lifetime`` so a fresh credential is never
    already due for a refresh (that is how botocore ends up calling STS per request).
    """
    lifetime = max(int(lifetime_seconds), 3)
    mandatory = DEFAULT_MANDATORY_SECONDS if mandatory is None else mandatory
    advisory = advisory_for_lifetime(lifetime) if advisory is None else advisory
    if advisory >= lifetime:
        # Credentials shorter than the window (a role's MaxSessionDuration below the
        # requested one, a plugin issuing 5-minute credentials): keep a quarter of the
        # lifetime of reuse rather than refreshing on every request.
        advisory = lifetime * 3 // 4
    mandatory = min(mandatory, max(advisory // 2, 1))
    advisory = max(advisory, mandatory + 1)
    return advisory, mandatory


class Backoff:
    """Jittered, growing, capped delays between failed refresh attempts."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, *, permanent: bool = False) -> float:
        """Record one failure and return how long to wait before the next attempt.

        A permanent failure (access denied, bad token, ...) waits the cap at once:
        retrying it quickly only adds load and log lines.
        """
        self.failures += 1
        if permanent:
            return float(self.cap * (0.9 + 0.1 * self._rng.random()))
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        # Jitter between half and all of the ceiling spreads the retries of many
        # processes that failed together.
        return float(ceiling * (0.5 + 0.5 * self._rng.random()))

    def reset(self) -> None:
        self.failures = 0
