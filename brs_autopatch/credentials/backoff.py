"""After a failed refresh: how long to back off (which failures are permanent: failures.py).

Pure functions and one small class, no I/O, so the policy is unit-tested on its own.
When a refresh is due at all is :mod:`brs_autopatch.credentials.schedule`'s business.
"""

from __future__ import annotations

import random

# Backoff after a failed refresh while the current credentials are still good
# ("static stability"): keep serving them and retry later, not on every request.
ADVISORY_BACKOFF_BASE = 15.0
ADVISORY_BACKOFF_CAP = 300.0
# Inside the mandatory window, requests fail; retry STS at most this often.
MANDATORY_BACKOFF_BASE = 1.0
MANDATORY_BACKOFF_CAP = 30.0

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
