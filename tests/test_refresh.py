"""Backoff, pure (windows: test_schedule.py; error descriptions: test_secrets.py)."""

from __future__ import annotations

import random

from brs_autopatch import refresh


def test_backoff_grows_jittered_and_capped() -> None:
    backoff = refresh.Backoff(10, 100, random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [10, 20, 40, 80, 100, 100, 100, 100]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 10


def test_permanent_failures_wait_the_cap_at_once() -> None:
    assert refresh.Backoff(10, 100).next_delay(permanent=True) >= 90

