"""The refresh engine against the local STS: calls per window, threads, failures, background."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
import pytest
from engine_helpers import SimClock, seconds_left, simulated
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer

from brs_autopatch import CredentialRefreshError, RefreshableSession
from brs_autopatch.config.settings import Settings
from brs_autopatch.credentials.lifecycle import Refresher

ROLE = "arn:aws:iam::123456789012:role/engine"


def settings(duration: int, **extra: object) -> Settings:
    return Settings(role_arns=(ROLE,), role_session_name="engine", duration_seconds=duration, **extra)  # type: ignore[arg-type]


def test_900s_burst_makes_one_assume_role(sts: StsServer, aws_env: dict[str, str]) -> None:
    session = RefreshableSession({"RoleArn": ROLE, "DurationSeconds": 900})
    client = session.client("sts")
    for _ in range(2000):
        client.get_caller_identity()
    assert sts.count("sts:AssumeRole") == 1  # botocore's own windows make this 2000
    assert sts.count("sts:GetCallerIdentity") == 2000


@pytest.mark.parametrize("duration, most", [(900, 13), (3600, 3)])
def test_two_simulated_hours(sts: StsServer, aws_env: dict[str, str], duration: int, most: int) -> None:
    clock = SimClock()
    creds = simulated(settings(duration), clock)
    for _ in range(2000):
        creds.get_frozen_credentials()
        clock.advance(7200 / 2000)
    assert sts.count("sts:AssumeRole") <= most
    assert creds.stats.failures == 0


@pytest.mark.parametrize("window", ["advisory", "mandatory"])
def test_32_threads_inside_a_window_make_one_call(
    sts: StsServer, aws_env: dict[str, str], window: str
) -> None:
    clock = SimClock()
    creds = simulated(settings(900), clock)
    creds.get_frozen_credentials()
    advisory, mandatory = creds.windows
    left = (advisory + mandatory) / 2 if window == "advisory" else mandatory / 2
    clock.advance(seconds_left(creds, clock) - left)
    sts.reset()
    barrier = threading.Barrier(32)

    def worker() -> int:
        barrier.wait(timeout=30)
        errors = 0
        for _ in range(100):
            try:
                creds.get_frozen_credentials()
            except Exception:
                errors += 1
        return errors

    with ThreadPoolExecutor(32) as pool:
        errors = sum(pool.map(lambda _: worker(), range(32)))
    assert errors == 0
    assert sts.count("sts:AssumeRole") == 1
    assert seconds_left(creds, clock) > advisory


def test_sts_503_in_advisory_window_serves_current_credentials(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimClock()
    creds = simulated(settings(900), clock)
    first = creds.get_frozen_credentials()
    advisory, mandatory = creds.windows
    clock.advance(seconds_left(creds, clock) - advisory + 1)
    sts.reset()
    sts.fault("AssumeRole", "503")
    caplog.set_level(logging.WARNING, "brs_autopatch")
    # 2000 requests spread over the rest of the advisory window, all must succeed.
    step = (advisory - mandatory - 2) / 2000
    for _ in range(2000):
        assert creds.get_frozen_credentials() == first
        clock.advance(step)
    attempts = sts.count("sts:AssumeRole")  # HTTP requests, each retried once by botocore
    assert 1 <= attempts <= 12, attempts
    assert creds.stats.failures <= 6
    assert any("serving current credentials" in r.getMessage() for r in caplog.records)
    sts.clear_faults()
    clock.advance(10)
    assert creds.get_frozen_credentials() != first  # recovered before the mandatory window


def test_access_denied_is_not_retried_like_a_transient(sts: StsServer, aws_env: dict[str, str]) -> None:
    clock = SimClock()
    creds = simulated(settings(3600), clock)
    creds.get_frozen_credentials()
    advisory, _ = creds.windows
    clock.advance(seconds_left(creds, clock) - advisory + 1)
    sts.reset()
    sts.fault("AssumeRole", "access_denied")
    advisory, mandatory = creds.windows
    # 500 requests over 500 s, or the (jittered) advisory window if that is shorter.
    step = min(500, advisory - mandatory - 10) / 500
    for _ in range(500):
        creds.get_frozen_credentials()
        clock.advance(step)
    # Transient errors back off 15, 30, 60 ... s (at least 5 attempts in 410 s); access
    # denied waits the cap (300 s) at once, plus one last try before the mandatory window.
    assert creds.stats.failures <= 3


@pytest.mark.parametrize(
    "mode, cause",
    [
        ("access_denied", "access denied: AccessDenied"),
        ("503", "STS error (HTTP 503)"),
        ("throttle", "throttled: Throttling"),
    ],
)
def test_failure_past_expiry_raises_naming_role(
    sts: StsServer, aws_env: dict[str, str], mode: str, cause: str
) -> None:
    session = RefreshableSession({"RoleArn": ROLE})
    client = session.client("sts")
    client.get_caller_identity()
    creds = session.refreshable_credentials
    creds._clock = lambda: creds._expiry_ts + 5  # simulated: expired five seconds ago
    sts.reset()
    sts.fault("AssumeRole", mode)
    for _ in range(3):
        with pytest.raises(CredentialRefreshError) as caught:
            client.get_caller_identity()
        assert ROLE in str(caught.value) and cause in str(caught.value)
    assert sts.count("sts:GetCallerIdentity") == 0  # never signed with anything else
    signed = {c["access_key_id"] for c in sts.calls() if c["action"] != "AssumeRole"}
    assert FAKE_SOURCE_ACCESS_KEY_ID not in signed
    assert creds.stats.failures == 1  # the next two failed fast inside the backoff


def test_background_refresh_means_no_request_waits(
    sts: StsServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refresher looks at the (simulated) clock every 20 ms instead of every minute.
    monkeypatch.setattr(Refresher, "max_sleep", 0.02)
    clock = SimClock()
    creds = simulated(settings(900, defer_refresh=False), clock)
    assert creds.stats.request_path_fetches == 1  # the constructor's own fetch
    sts.fault("AssumeRole", "delay", delay_seconds=2.0)
    # Walk through two refresh cycles with STS taking 2 s: requests keep being served
    # from memory while the refresher thread waits on STS.
    for cycle in range(2):
        advisory, _ = creds.windows  # this refresh's (jittered) window
        clock.advance(seconds_left(creds, clock) - advisory - 20)  # inside the lead time (30 s)
        deadline = time.monotonic() + 15
        moved = False
        while creds.stats.background_fetches == cycle and time.monotonic() < deadline:
            if not moved and creds._refresh_lock.locked():
                # The refresher is waiting on STS: let simulated time reach the advisory
                # window, where botocore would make a request thread refresh.
                clock.advance(40)
                moved = True
            creds.get_frozen_credentials()
            time.sleep(0.001)
        assert moved
        assert creds.stats.background_fetches == cycle + 1
    assert creds.stats.request_path_fetches == 1
    creds.stop()


def test_hot_path_does_not_read_the_clock_datetime(sts: StsServer, aws_env: dict[str, str]) -> None:
    creds = simulated(settings(900), SimClock())
    creds.get_frozen_credentials()
    calls = 0
    real = creds._utcnow

    def counting() -> object:
        nonlocal calls
        calls += 1
        return real()

    creds._time_fetcher = counting  # type: ignore[attr-defined]  # botocore's clock hook
    for _ in range(1000):
        creds.get_frozen_credentials()
    assert calls == 0  # botocore's path would build a datetime on each of the 1000


def test_one_sts_client_per_credentials_object(
    sts: StsServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real = botocore.session.Session.create_client

    def counting(self: botocore.session.Session, service_name: str, *a: Any, **k: Any) -> Any:
        made.append(service_name)
        return real(self, service_name, *a, **k)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    clock = SimClock()
    creds = simulated(settings(900), clock)
    for _ in range(5):
        creds.get_frozen_credentials()
        clock.advance(850)  # inside the mandatory window, whatever the jitter
    assert sts.count("sts:AssumeRole") == 5
    assert made == ["sts"]


def test_background_refresh_skips_when_a_request_already_refreshed(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    # The refresher waits for botocore's lock; if a request refreshed meanwhile (e.g.
    # after a suspend), taking the lock must not trigger a second AssumeRole.
    clock = SimClock()
    creds = simulated(settings(900, defer_refresh=False), clock)
    assert sts.count("sts:AssumeRole") == 1
    creds.refresh_in_background()
    assert sts.count("sts:AssumeRole") == 1
    clock.advance(seconds_left(creds, clock) - 1)  # long overdue: now it does refresh
    creds.refresh_in_background()
    assert sts.count("sts:AssumeRole") == 2
    creds.stop()
