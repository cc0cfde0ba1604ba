"""Backoff, pure (windows: test_schedule.py; error descriptions: test_secrets.py)."""

from __future__ import annotations

import random

from brs_autopatch.credentials import backoff as refresh


def test_backoff_grows_jittered_and_capped() -> None:
    backoff = refresh.Backoff(10, 100, random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [10, 20, 40, 80, 100, 100, 100, 100]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 10


def test_permanent_failures_wait_the_cap_at_once() -> None:
    assert refresh.Backoff(10, 100).next_delay(permanent=True) >= 90



def test_the_readme_backoff_policy() -> None:
    # docs/how-it-works.md "Static stability": in the advisory window failures back off jittered and
    # growing, capped at 5 minutes, and access-denied style errors wait the cap at once;
    # in the mandatory window retries are spaced (at most 30 s apart, as test_storms assumes).
    def advisory(seed: int | None = None) -> refresh.Backoff:
        rng = random.Random(seed)
        return refresh.Backoff(refresh.ADVISORY_BACKOFF_BASE, refresh.ADVISORY_BACKOFF_CAP, rng)

    backoff = advisory(3)
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[0] <= 15 and max(delays) <= 300 and max(delays[-4:]) >= 150
    assert advisory().next_delay(permanent=True) >= 0.9 * 300
    mandatory = refresh.Backoff(refresh.MANDATORY_BACKOFF_BASE, refresh.MANDATORY_BACKOFF_CAP)
    spaced = [mandatory.next_delay() for _ in range(12)]
    assert spaced[0] >= 0.5 and max(spaced) <= 30
