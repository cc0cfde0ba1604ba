"""g. A fleet started in the same second: peak AssumeRole per second, with and without jitter.

1000 real ``RoleCredentials`` objects (one per simulated process, each with its own
random generator, as separate processes have) share one simulated clock; their fetch
is an in-memory counter issuing credentials of the chosen lifetime, so no STS traffic
is involved: what is measured is the engine's own refresh schedule. Each object is asked
for credentials once per simulated second, as a busy process would be.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from brs_autopatch.credentials.engine import RoleCredentials

from .report import Table


class _NoJitter(random.Random):
    """Every refresh at the top of the advisory window: the schedule without jitter."""

    def random(self) -> float:
        return 0.0


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _fleet(size: int, lifetime: int, hours: float, jitter: bool) -> Counter[int]:
    clock = _Clock()
    start = int(clock.now)
    per_second: Counter[int] = Counter()

    def factory() -> Any:
        def fetch() -> Mapping[str, Any]:
            per_second[int(clock.now) - start] += 1
            expiry = datetime.fromtimestamp(clock.now, timezone.utc) + timedelta(seconds=lifetime)
            key = f"ASIAFLEET{sum(per_second.values()):011d}"
            return {"access_key": key, "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

        return fetch

    fleet = [
        RoleCredentials(
            factory,
            label=f"process {index}",
            clock=clock,
            rng=random.Random(index) if jitter else _NoJitter(),
        )
        for index in range(size)
    ]
    for _second in range(int(hours * 3600)):
        for credentials in fleet:
            credentials.get_frozen_credentials()
        clock.now += 1.0
    return per_second


def fleet(size: int = 1000, lifetime: int = 3600, hours: float = 3.0) -> Table:
    table = Table(
        "fleet",
        f"g. {size} processes started in the same second, {lifetime} s credentials, "
        f"simulated {hours:g} h: AssumeRole per second",
        ["schedule", "AssumeRole", "peak per second", "seconds with a call", "peak after the first hour"],
    )
    for label, jitter in (("without jitter", False), ("with jitter (brs_autopatch)", True)):
        counts = _fleet(size, lifetime, hours, jitter)
        later = [n for second, n in counts.items() if second >= 3600]
        table.add(label, sum(counts.values()), max(counts.values()), len(counts), max(later, default=0))
        table.data[label] = {"total": sum(counts.values()), "peak": max(counts.values())}
    table.notes.append(
        "All start together, so the first AssumeRole is at the same second for all; without "
        "jitter every later refresh is too. With jitter each refresh lands at a random point "
        "of the advisory window's upper half, and the fleet drifts apart."
    )
    return table
