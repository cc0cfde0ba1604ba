"""A simulated clock for refresh tests that still talk to the real (local) STS.

moto stamps ``Expiration = real now + DurationSeconds``. To simulate hours, the
credentials get a clock ``real time + offset`` and every answer from STS is shifted
by the same offset, as if STS ran on the simulated clock. The AssumeRole calls are
real and counted at the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dateutil.parser import isoparse

from brs_autopatch import factory
from brs_autopatch.credentials import RoleCredentials
from brs_autopatch.settings import Settings


class SimClock:
    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


def simulated(settings: Settings, clock: SimClock) -> RoleCredentials:
    """factory.build with ``clock``, STS answers shifted onto the simulated clock."""
    creds = factory.build(settings, clock=clock)
    real_factory = creds._factory

    def shifted_factory() -> Any:
        fetch = real_factory()

        def shifted() -> Mapping[str, Any]:
            answer = dict(fetch())
            expiry = isoparse(str(answer["expiry_time"])) + timedelta(seconds=clock.offset)
            answer["expiry_time"] = expiry.isoformat()
            return answer

        return shifted

    creds._factory = shifted_factory
    creds._fetcher = None  # with defer_refresh=False, build() already made an unshifted one
    return creds


def seconds_left(creds: RoleCredentials, clock: SimClock) -> float:
    return creds._expiry_ts - clock()
