"""Refresh policy, pure: windows from lifetimes, backoff (error descriptions: test_secrets)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brs_autopatch import refresh


@pytest.mark.parametrize(
    "lifetime, advisory",
    [
        (900, 300),
        (1200, 300),
        (1201, 900),
        (3600, 900),
        (5399, 900),
        (5400, 3600),
        (43200, 3600),
    ],
)
def test_advisory_scales_with_lifetime(lifetime: int, advisory: int) -> None:
    assert refresh.advisory_for_lifetime(lifetime) == advisory
    assert refresh.choose_windows(lifetime) == (advisory, refresh.DEFAULT_MANDATORY_SECONDS)


def test_explicit_windows_win() -> None:
    assert refresh.choose_windows(3600, 1200, 120) == (1200, 120)


@given(
    st.integers(1, 100_000),
    st.one_of(st.none(), st.integers(1, 100_000)),
    st.one_of(st.none(), st.integers(1, 100_000)),
)
def test_windows_always_ordered_within_lifetime(
    lifetime: int, advisory: int | None, mandatory: int | None
) -> None:
    a, m = refresh.choose_windows(lifetime, advisory, mandatory)
    assert 0 < m < a < max(lifetime, 3)


def test_backoff_grows_jittered_and_capped() -> None:
    backoff = refresh.Backoff(10, 100, random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [10, 20, 40, 80, 100, 100, 100, 100]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 10


def test_permanent_failures_wait_the_cap_at_once() -> None:
    assert refresh.Backoff(10, 100).next_delay(permanent=True) >= 90
