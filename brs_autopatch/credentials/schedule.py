"""The refresh schedule: one pure function decides every window, for every lifetime.

botocore refreshes ``RefreshableCredentials`` 900 s (advisory) and 600 s (mandatory)
before expiry, so 900-second credentials are refreshed on *every* call. We follow the
policy botocore itself is preparing (boto/botocore#3760): a 60 s mandatory window and
an advisory window scaled to each credential's lifetime, plus two things of our own:

* a background *lead* (``defer_refresh=False``): the refresher thread renews a little
  before requests would, so no request waits on STS;
* *jitter*: each refresh lands at a random point of the upper half of the advisory
  window, so a fleet started in the same second does not call STS in the same second.

Whatever the inputs (explicit windows included), :func:`choose` keeps

    0 < mandatory < advisory   and   advisory + lead <= lifetime * REUSE_FRACTION

so fresh credentials are used for at least a fifth of their life before a refresh is
due: no setting and no method answer can make a refresh due immediately (a refresh
storm). Credentials with less than :data:`MIN_USABLE_SECONDS` left are refused as a
failed refresh (with backoff) by the engine. No I/O here: property-tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MANDATORY_SECONDS = 60.0
# At most this share of a lifetime may be spent inside advisory window + lead.
REUSE_FRACTION = 0.8
# Credentials arriving with less than this left cannot be scheduled sensibly: the
# engine treats them as a failed refresh (clock skew, an expired cache or method answer).
MIN_USABLE_SECONDS = 2.0
# The background lead: a tenth of the advisory window, at most 30 s.
LEAD_FRACTION = 0.1
MAX_LEAD_SECONDS = 30.0
# Jitter moves the refresh point down by up to this share of (advisory - mandatory):
# the upper half of the window, so failed refreshes still get retries before it ends.
JITTER_FRACTION = 0.5


@dataclass(frozen=True)
class Schedule:
    """Windows in force for one set of credentials, in seconds before expiry."""

    advisory: float
    mandatory: float
    lead: float

    def advisory_at(self, jitter: float) -> float:
        """The advisory window for one refresh; ``jitter`` in [0, 1) from the engine's RNG."""
        jitter = min(max(jitter, 0.0), 1.0)
        return self.advisory - jitter * JITTER_FRACTION * (self.advisory - self.mandatory)

    def refresh_at(self, expiry: float, jitter: float, *, background: bool) -> float:
        """Wall-clock time at which the next refresh is due."""
        return expiry - self.advisory_at(jitter) - (self.lead if background else 0.0)


def advisory_for_lifetime(lifetime_seconds: float) -> float:
    """The default advisory window for credentials valid ``lifetime_seconds`` when issued.

    <= 20 min -> 5 min, < 90 min -> 15 min, otherwise 60 min.
    """
    if lifetime_seconds <= 20 * 60:
        return 5 * 60.0
    if lifetime_seconds < 90 * 60:
        return 15 * 60.0
    return 60 * 60.0


def lead_for(advisory: float) -> float:
    """How far ahead of the advisory window the background thread refreshes.

    Any lead works: should STS take longer, requests entering the advisory window find
    the refresh lock taken and keep the current credentials without waiting. A short
    one keeps the background mode from refreshing more often than the lazy one.
    """
    return min(advisory * LEAD_FRACTION, MAX_LEAD_SECONDS)


def choose(
    lifetime_seconds: float, advisory: float | None = None, mandatory: float | None = None
) -> Schedule:
    """The schedule for credentials of this lifetime. Explicit windows win where they fit.

    ``lifetime_seconds`` is what is left of the credentials when they arrive (at least
    :data:`MIN_USABLE_SECONDS`; the engine refuses shorter ones before asking).
    """
    lifetime = max(float(lifetime_seconds), MIN_USABLE_SECONDS)
    wanted = advisory_for_lifetime(lifetime) if advisory is None else float(advisory)
    # The largest advisory window with advisory + lead_for(advisory) <= budget: the lead
    # is the 30 s cap from a 300 s window up, a tenth of the window below that.
    budget = REUSE_FRACTION * lifetime
    cap_from = MAX_LEAD_SECONDS / LEAD_FRACTION
    if budget - MAX_LEAD_SECONDS >= cap_from:
        ceiling = budget - MAX_LEAD_SECONDS
    else:
        ceiling = budget / (1 + LEAD_FRACTION)
    chosen_advisory = min(max(wanted, 0.0), ceiling)
    chosen_mandatory = DEFAULT_MANDATORY_SECONDS if mandatory is None else float(mandatory)
    # The mandatory window is at most half the advisory one: room for advisory retries.
    chosen_mandatory = min(max(chosen_mandatory, 0.0), chosen_advisory / 2)
    if chosen_mandatory <= 0.0 or chosen_advisory <= chosen_mandatory:
        # Explicit zero or tiny windows: keep the invariant with the smallest sane values.
        chosen_advisory = max(chosen_advisory, min(ceiling, 1.0))
        chosen_mandatory = chosen_advisory / 2
    return Schedule(chosen_advisory, chosen_mandatory, lead_for(chosen_advisory))
