"""What a credential fetch answered: normalised metadata, its expiry and its schedule.

Pure, no I/O. A fetch (a method, the file cache, the credential server) returns
botocore's metadata keys; :func:`plan` decides whether the answer is usable at all and
which :class:`~brs_autopatch.credentials.schedule.Schedule` it gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dateutil.parser import isoparse

from . import schedule
from .schedule import Schedule


class ExpiredAnswerError(RuntimeError):
    """Credentials that expire before they can be used: an expired cache entry or method
    answer, or a clock far ahead of STS's. Counted as a failed refresh (backoff), never
    handed to botocore, which would raise its bare "still expired" RuntimeError per request.
    """


def normalize(raw: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A method's answer -> botocore's metadata dict with an ISO-8601 expiry string."""
    metadata = dict(raw)
    expiry = metadata["expiry_time"]
    if isinstance(expiry, datetime):
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=timezone.utc)
        metadata["expiry_time"] = expiry.astimezone(timezone.utc).isoformat()
    # The lifetime (expiry - issued_at) picks the refresh windows, also for readers of
    # the file cache who get the credentials later.
    metadata.setdefault("issued_at", now)
    return metadata


def plan(
    metadata: Mapping[str, Any], now: float, windows: tuple[int | None, int | None] = (None, None)
) -> tuple[float, Schedule]:
    """Expiry and schedule for ``metadata``; ExpiredAnswerError if it is of no use.

    Windows come from the lifetime at issue (``issued_at``), as botocore's coming
    policy does; when less is left than that schedule needs (an entry shared through
    the cache, a served answer), they are scaled to what is left.
    """
    expiry = isoparse(str(metadata["expiry_time"])).timestamp()
    remaining = expiry - now
    if remaining < schedule.MIN_USABLE_SECONDS:
        raise ExpiredAnswerError(
            f"the credentials expire at {iso(expiry)}, {remaining:.0f} s from now by this "
            "machine's clock: expired on arrival (is the clock right?)"
        )
    issued = float(metadata.get("issued_at", now))
    chosen = schedule.choose(expiry - issued, *windows)
    if chosen.advisory + chosen.lead > schedule.REUSE_FRACTION * remaining:
        chosen = schedule.choose(remaining, *windows)
    return expiry, chosen


def iso(moment: float | datetime) -> str:
    """A time as the AWS SDKs write an expiry: UTC, whole seconds, ``Z`` (the one home of
    this format: logs, ``--check``, ``--credential-process``, the credential server)."""
    when = moment if isinstance(moment, datetime) else datetime.fromtimestamp(moment, timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
