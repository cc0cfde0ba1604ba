"""Issue 10 D: a request never gets credentials that are not (yet) the published ones.

The fast path reads the frozen credentials and their freshness deadline. If the
deadline opens before botocore stores the new credentials, a concurrent request gets
``None`` on the first fetch, or the previous, already expired key right after an
outage. The gap is widened here the way a real program widens it: a log handler that
takes a while (a slow disk, a remote syslog) on the engine's INFO line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from engine_helpers import SimClock, figure, record_answers, seconds_left, simulated
from stsclient import StsServer

from brs_autopatch import CredentialRefreshError
from brs_autopatch.config.settings import Settings
from brs_autopatch.credentials import sources

ROLE = "arn:aws:iam::123456789012:role/publish"
THREADS = 100
CALLS = 40


class ProbingHandler(logging.Handler):
    """A log sink that lets another thread run while the engine logs its INFO line.

    On "refreshed credentials ..." it makes one request from another thread and waits
    for it (at most ``wait`` s): what any slow handler (a disk, a remote syslog) lets
    happen by chance, made certain. The request may block on the refresh lock held by
    the logging thread (then it finishes after the refresh); it must never be answered
    with what is not yet published.
    """

    def __init__(self, wait: float = 0.5) -> None:
        super().__init__(logging.INFO)
        self.wait = wait
        self.probe: Callable[[], str] | None = None
        self.threads: list[threading.Thread] = []
        self.results: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        probe = self.probe
        if probe is None or not record.getMessage().startswith("refreshed credentials"):
            return
        thread = threading.Thread(target=lambda: self.results.append(probe()), daemon=True)
        self.threads.append(thread)
        thread.start()
        thread.join(self.wait)

    def finished(self) -> list[str]:
        for thread in self.threads:
            thread.join(10)
        return self.results


@pytest.fixture
def probing_log() -> Iterator[ProbingHandler]:
    logger = logging.getLogger("brs_autopatch")
    handler = ProbingHandler()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def settings() -> Settings:
    return Settings(role_arns=(ROLE,), role_session_name="publish", duration_seconds=900)


def test_no_expired_key_during_recovery_after_expiry(
    sts: StsServer, aws_env: dict[str, str], probing_log: ProbingHandler
) -> None:
    clock = SimClock()
    creds = simulated(settings(), clock)
    expiry_of = record_answers(creds)
    creds.get_frozen_credentials()
    clock.advance(seconds_left(creds, clock) + 5)  # expired five seconds ago
    sts.fault("AssumeRole", "503", count=2)  # one failed attempt (botocore sends it twice)
    with pytest.raises(CredentialRefreshError):
        creds.get_frozen_credentials()  # the outage: requests fail until a retry succeeds

    def request() -> str:
        called_at = clock()
        try:
            frozen = creds.get_frozen_credentials()
        except CredentialRefreshError:
            return "refresh error (outage)"
        if frozen is None:
            return "None"
        if expiry_of.get(frozen.access_key or "", 0.0) <= called_at:
            return "expired key"  # would be signed with a key expired at call time
        return "good"

    probing_log.probe = request
    # STS is back; the retry comes after the backoff (at most 1 s), while 100 threads
    # keep calling, 40 calls each, spread over about 2 s.
    outcomes = run_threads(THREADS, CALLS, request, stagger=0.0005, pause=0.05)
    figure("D recovery", outcomes=dict(outcomes), probe=probing_log.finished())
    assert sum(outcomes.values()) == THREADS * CALLS
    assert outcomes["good"] > 0, outcomes  # the recovery happened while the threads ran
    assert outcomes["expired key"] == 0 and outcomes["None"] == 0, dict(outcomes)
    assert probing_log.finished() == ["good"]  # the request made during the refresh's log line
    assert sts.count("sts:AssumeRole") == 4  # first fetch, failed attempt (sent twice), one retry
    assert len(expiry_of) == 2


@pytest.mark.parametrize("through", ["get_frozen_credentials", "client"])
def test_concurrent_first_fetch_never_gives_none(
    sts: StsServer, aws_env: dict[str, str], probing_log: ProbingHandler, through: str
) -> None:
    creds = simulated(settings(), SimClock())
    client: Any = sources.session_with(creds).create_client("sts")

    def request() -> str:
        try:
            if through == "client":
                client.get_caller_identity()
                return "good"
            return "good" if creds.get_frozen_credentials() is not None else "None"
        except Exception as error:
            return type(error).__name__  # NoCredentialsError: signed without credentials

    probing_log.probe = request
    outcomes = run_threads(32, 5, request, stagger=0.01, pause=0.01)
    figure(f"D first fetch {through}", outcomes=dict(outcomes), probe=probing_log.finished())
    assert outcomes == Counter({"good": 32 * 5}), dict(outcomes)
    assert probing_log.finished() == ["good"]
    assert sts.count("sts:AssumeRole") == 1


def run_threads(
    threads: int, calls: int, request: Callable[[], str], *, stagger: float, pause: float
) -> Counter[str]:
    """``threads`` threads start together, thread i ``i * stagger`` s late, each making
    ``calls`` requests ``pause`` s apart. Outcomes counted."""
    barrier = threading.Barrier(threads)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait(timeout=60)
        time.sleep(index * stagger)
        for _ in range(calls):
            outcome = request()
            with lock:
                outcomes[outcome] += 1
            time.sleep(pause)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return outcomes
