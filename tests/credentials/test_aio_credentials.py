"""The awaitable view of RoleCredentials (aio_credentials.py), with plain asyncio.

No aiobotocore needed: the view is driven directly, against the real local STS, with
the simulated clock of engine_helpers to reach the advisory and mandatory windows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials
from engine_helpers import SimClock, seconds_left, simulated
from stsclient import StsServer, make_role_arn

from brs_autopatch.config.settings import Settings
from brs_autopatch.credentials.async_view import AioRoleCredentials
from brs_autopatch.credentials.engine import RoleCredentials
from brs_autopatch.errors import CredentialRefreshError

ROLE = make_role_arn("aio-view")


@pytest.fixture
def creds(sts: StsServer, aws_env: dict[str, str]) -> Iterator[tuple[RoleCredentials, SimClock]]:
    clock = SimClock()
    settings = Settings(role_arns=(ROLE,), role_session_name="aio", duration_seconds=3600)
    built = simulated(settings, clock)
    yield built, clock
    built.stop()


def finished_without_suspending(coro: Coroutine[Any, Any, ReadOnlyCredentials]) -> ReadOnlyCredentials:
    """Run ``coro`` one step: it must complete at once (no await that suspends)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: ReadOnlyCredentials = done.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended")


def to_window(creds: RoleCredentials, clock: SimClock, left: float) -> None:
    clock.advance(seconds_left(creds, clock) - left)


def test_fresh_credentials_return_without_suspending(
    sts: StsServer, creds: tuple[RoleCredentials, SimClock]
) -> None:
    shared, _ = creds
    frozen = shared.get_frozen_credentials()
    view = AioRoleCredentials(shared)
    for _ in range(1000):
        assert finished_without_suspending(view.get_frozen_credentials()) is frozen
    assert view.method == "brs-autopatch"
    assert view.access_key == frozen.access_key and view.get_deferred_property("token")() == frozen.token
    assert "secret" not in repr(view).lower() and str(frozen.secret_key) not in repr(view)
    assert sts.count("sts:AssumeRole") == 1


async def burst(view: AioRoleCredentials, n: int) -> list[Any]:
    return await asyncio.gather(*(view.get_frozen_credentials() for _ in range(n)), return_exceptions=True)


@pytest.mark.parametrize("when", ["first use", "mandatory window"])
def test_two_hundred_coroutines_share_one_refresh_off_the_loop(
    sts: StsServer, creds: tuple[RoleCredentials, SimClock], when: str
) -> None:
    shared, clock = creds
    before = 0
    if when == "mandatory window":
        shared.get_frozen_credentials()
        to_window(shared, clock, 30)  # mandatory window: 60 s
        before = 1
    sts.fault("AssumeRole", "delay", delay_seconds=0.5)
    view = AioRoleCredentials(shared)
    lags: list[float] = []

    async def main() -> list[Any]:
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - started - 0.001)

        tick = asyncio.create_task(ticker())
        results = await burst(view, 200)
        stop.set()
        await tick
        return results

    results = asyncio.run(main())
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len({r.access_key for r in results}) == 1
    assert sts.count("sts:AssumeRole") == before + 1
    assert shared.stats.request_path_fetches == before + 1
    if when == "mandatory window":
        # The loop kept ticking while STS took 0.5 s (loose: 2 shared cores). Not on first
        # use: building the STS client parses botocore's JSON models in one C call that
        # holds the GIL, wherever it runs (aiobotocore's own client creation does too).
        assert max(lags) < 0.25, max(lags)


def test_advisory_window_serves_current_credentials_and_refreshes_behind(
    sts: StsServer, creds: tuple[RoleCredentials, SimClock]
) -> None:
    shared, clock = creds
    old = shared.get_frozen_credentials()
    advisory, mandatory = shared.windows  # this refresh's (jittered) advisory window
    to_window(shared, clock, (advisory + mandatory) / 2)
    sts.fault("AssumeRole", "delay", delay_seconds=0.3)
    view = AioRoleCredentials(shared)
    served = [finished_without_suspending(view.get_frozen_credentials()) for _ in range(50)]
    assert {c.access_key for c in served} == {old.access_key}
    deadline = time.monotonic() + 15
    while shared.stats.fetches < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shared.stats.fetches == 2
    new = finished_without_suspending(view.get_frozen_credentials())
    assert new.access_key != old.access_key
    assert sts.count("sts:AssumeRole") == 2  # 50 requests in the window, one refresh


def test_a_failed_refresh_raises_a_fresh_error_per_coroutine(
    sts: StsServer, creds: tuple[RoleCredentials, SimClock]
) -> None:
    shared, _ = creds
    sts.fault("AssumeRole", "access_denied", delay_seconds=0.3)
    results = asyncio.run(burst(AioRoleCredentials(shared), 20))
    assert all(isinstance(r, CredentialRefreshError) for r in results), results
    assert len({id(r) for r in results}) == 20
    assert all(ROLE in str(r) for r in results)
    assert sts.count("sts:AssumeRole") == 1


def test_loops_in_several_threads_make_one_assume_role(
    sts: StsServer, creds: tuple[RoleCredentials, SimClock]
) -> None:
    shared, _ = creds
    sts.fault("AssumeRole", "delay", delay_seconds=0.5)
    keys: list[str | None] = []
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            results = asyncio.run(burst(AioRoleCredentials(shared), 50))
            keys.extend(r.access_key for r in results)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(keys) == 200 and len(set(keys)) == 1
    assert sts.count("sts:AssumeRole") == 1


def test_a_cancelled_caller_does_not_cancel_the_others(
    sts: StsServer, creds: tuple[RoleCredentials, SimClock]
) -> None:
    shared, _ = creds
    sts.fault("AssumeRole", "delay", delay_seconds=0.5)
    view = AioRoleCredentials(shared)

    async def main() -> tuple[bool, list[Any]]:
        first = asyncio.create_task(view.get_frozen_credentials())
        others = [asyncio.create_task(view.get_frozen_credentials()) for _ in range(10)]
        await asyncio.sleep(0.1)
        first.cancel()
        results = await asyncio.gather(*others, return_exceptions=True)
        return first.cancelled(), results

    cancelled, results = asyncio.run(main())
    assert cancelled
    assert all(isinstance(r, ReadOnlyCredentials) for r in results), results
    assert sts.count("sts:AssumeRole") == 1
