"""The refresh schedule, pure: windows per lifetime, invariants for every input, jitter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brs_autopatch.credentials import schedule


@pytest.mark.parametrize(
    "lifetime, advisory",
    [(900, 300), (1200, 300), (1201, 900), (3600, 900), (5399, 900), (5400, 3600), (43200, 3600)],
)
def test_advisory_scales_with_lifetime(lifetime: int, advisory: int) -> None:
    chosen = schedule.choose(lifetime)
    assert schedule.advisory_for_lifetime(lifetime) == advisory
    assert (chosen.advisory, chosen.mandatory) == (advisory, schedule.DEFAULT_MANDATORY_SECONDS)
    assert chosen.lead == min(advisory / 10, 30)


def test_explicit_windows_win_where_they_fit() -> None:
    chosen = schedule.choose(3600, 1200, 120)
    assert (chosen.advisory, chosen.mandatory) == (1200, 120)


@pytest.mark.parametrize(
    "lifetime, advisory, mandatory",
    [
        (900, 890, None),  # BRS_DURATION_SECONDS=900 BRS_ADVISORY_REFRESH_SECONDS=890 (issue 10 B)
        (310, None, None),  # 310-second credentials from a plugin, default windows
        (12, None, None),  # the demo's credentials
        (1, None, None),
    ],
)
def test_no_setting_makes_a_refresh_due_on_arrival(
    lifetime: int, advisory: int | None, mandatory: int | None
) -> None:
    chosen = schedule.choose(lifetime, advisory, mandatory)
    usable = max(lifetime, schedule.MIN_USABLE_SECONDS)  # shorter ones are refused earlier
    # Due in the background at the earliest jitter: still a fifth of the life away.
    due = chosen.refresh_at(expiry=usable, jitter=0.0, background=True)
    assert due >= (1 - schedule.REUSE_FRACTION) * usable - 1e-9 > 0


lifetimes = st.floats(1, 12 * 3600, allow_nan=False)
windows = st.one_of(st.none(), st.integers(1, 43199))


@given(lifetimes, windows, windows, st.floats(0, 1, exclude_max=True))
def test_invariants_hold_for_every_lifetime_and_window(
    lifetime: float, advisory: int | None, mandatory: int | None, jitter: float
) -> None:
    chosen = schedule.choose(lifetime, advisory, mandatory)
    usable = max(lifetime, schedule.MIN_USABLE_SECONDS)
    assert 0 < chosen.mandatory < chosen.advisory
    assert chosen.advisory + chosen.lead <= schedule.REUSE_FRACTION * usable + 1e-9
    assert 0 <= chosen.lead <= schedule.MAX_LEAD_SECONDS
    effective = chosen.advisory_at(jitter)
    assert chosen.mandatory < effective <= chosen.advisory
    # The refresh point lies inside the advisory window, never before the lifetime starts.
    for background in (False, True):
        due = chosen.refresh_at(usable, jitter, background=background)
        assert (1 - schedule.REUSE_FRACTION) * usable - 1e-9 <= due < usable - chosen.mandatory


def test_jitter_spreads_a_fleet_started_together() -> None:
    # 1000 processes given 3600 s credentials in the same second.
    chosen = schedule.choose(3600)
    rng = random.Random(7)
    points = [int(chosen.refresh_at(3600, rng.random(), background=False)) for _ in range(1000)]
    assert max(points.count(second) for second in set(points)) <= 15
    assert max(points) - min(points) >= 0.9 * schedule.JITTER_FRACTION * (chosen.advisory - chosen.mandatory)
    assert min(points) >= 3600 - chosen.advisory
