"""Refresh policy, pure: backoff and error classification (windows: test_schedule.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

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


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "msg"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "AssumeRole")


@pytest.mark.parametrize(
    "error, cause, permanent",
    [
        (client_error("AccessDenied", 403), "access denied: AccessDenied: msg", True),
        (client_error("Throttling", 400), "throttled: Throttling: msg", False),
        (client_error("ServiceUnavailable", 503), "STS error (HTTP 503): ServiceUnavailable: msg", False),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            "STS unreachable: EndpointConnectionError",
            False,
        ),
        (NoCredentialsError(), "no source credentials to call STS with (set AWS_* or a profile)", True),
    ],
)
def test_describe_error(error: Exception, cause: str, permanent: bool) -> None:
    assert refresh.describe_error(error) == (cause, permanent)
