"""Issue 10 B: no accepted setting and no method answer makes a refresh storm.

Each test injects what used to make the engine call STS on every request (or in a
tight loop): windows that swallow the lifetime, short answers from a method, answers
that arrive expired, an eager first fetch that fails. Counts are server-side
(AssumeRole requests) or the method's own call count.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from engine_helpers import SimClock, figure, simulated, write_plugin
from hypothesis import strategies as st
from stsclient import RunPython, StsServer

from brs_autopatch import ConfigError, CredentialRefreshError
from brs_autopatch import build as factory
from brs_autopatch.config.from_env import from_env
from brs_autopatch.credentials import backoff as refresh
from brs_autopatch.credentials import schedule, sources
from brs_autopatch.credentials.lifecycle import Refresher

ROLE = "arn:aws:iam::123456789012:role/storms"
# A short look at a storm is enough: the old engine made thousands of calls per second.
STORM_WINDOW_SECONDS = 1.0


def hammer(creds: Any, seconds: float = STORM_WINDOW_SECONDS) -> int:
    """Requests for ``seconds``: what every request thread of a busy program does."""
    deadline = time.monotonic() + seconds
    requests = 0
    while time.monotonic() < deadline and requests < 200_000:
        creds.get_frozen_credentials()
        requests += 1
        if requests % 64 == 0:
            time.sleep(0.001)  # let the background refresher run, as real I/O would
    return requests


def test_advisory_window_close_to_the_lifetime_with_background_refresh(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    # 890 s of advisory window for 900 s credentials is accepted by validation; with the
    # background lead the old engine's next refresh was always "now": 4060 calls in 1 s.
    settings = from_env(
        {
            "BRS_ROLE_ARN": ROLE,
            "BRS_DURATION_SECONDS": "900",
            "BRS_ADVISORY_REFRESH_SECONDS": "890",
            "BRS_DEFER_REFRESH": "false",
        }
    )
    creds = factory.build(settings)
    try:
        requests = hammer(creds)
        calls = sts.count("sts:AssumeRole")
    finally:
        creds.stop()
    figure("B1 890/900 eager", requests=requests, assume_role=calls)
    assert requests > 100
    assert calls == 1, f"{calls} AssumeRole calls in {STORM_WINDOW_SECONDS} s"


# -- a method answering short-lived credentials ------------------------------------------------

SHORT_ANSWER = """
    import itertools, json, os
    from datetime import datetime, timedelta, timezone
    calls = itertools.count(1)

    def answer():
        n = next(calls)
        with open(os.environ["BRS_TEST_CALL_LOG"], "a") as log:
            log.write(f"{n}\\n")
        expiry = datetime.now(timezone.utc) + timedelta(seconds=float(os.environ["BRS_TEST_LIFETIME"]))
        return {
            "AccessKeyId": f"ASIASHORT{n:011d}",
            "SecretAccessKey": "short-secret",
            "SessionToken": "short-token",
            "Expiration": expiry,
        }

    def metadata_answer():
        # A plugin answers botocore's metadata keys (what the old engine took unchecked).
        sts_shape = answer()
        return {
            "access_key": sts_shape["AccessKeyId"],
            "secret_key": sts_shape["SecretAccessKey"],
            "token": sts_shape["SessionToken"],
            "expiry_time": sts_shape["Expiration"].isoformat(),
        }

    def method(context):
        return metadata_answer
"""


def method_calls(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


@pytest.fixture
def short_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A custom method module and a plugin (entry point) both answering ``lifetime`` s credentials."""
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "brs_short_answers.py").write_text(textwrap.dedent(SHORT_ANSWER))
    write_plugin(directory, "short-answers", "from brs_short_answers import method\n")
    monkeypatch.syspath_prepend(str(directory))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("BRS_TEST_CALL_LOG", str(log))

    def settings(kind: str, lifetime: float, **extra: str) -> Any:
        monkeypatch.setenv("BRS_TEST_LIFETIME", str(lifetime))
        env = {"BRS_DEFER_REFRESH": "false", **extra}
        if kind == "custom":
            env.update(BRS_METHOD="custom", BRS_CUSTOM_METHOD="brs_short_answers:answer")
        else:
            env.update(BRS_METHOD="short-answers")
        return from_env(env), log

    return settings


@pytest.mark.parametrize("kind", ["custom", "plugin"])
def test_method_answering_310_second_credentials_makes_no_storm(
    sts: StsServer, aws_env: dict[str, str], short_answers: Any, kind: str
) -> None:
    # Default windows (advisory 300 s for short lifetimes) + the 30 s lead > 310 s: the
    # old engine refreshed in a loop, 6414 calls per second.
    settings, log = short_answers(kind, 310)
    creds = factory.build(settings)
    try:
        requests = hammer(creds)
        calls = method_calls(log)
    finally:
        creds.stop()
    figure(f"B2 310 s {kind}", requests=requests, method_calls=calls)
    assert requests > 100
    assert calls == 1, f"{calls} method calls in {STORM_WINDOW_SECONDS} s"
    # Used for at least a fifth of their life before the next refresh.
    assert creds.next_refresh_time() - time.time() >= 0.2 * 310 - 5


# -- answers that arrive already expired ---------------------------------------------------------


def attempts_allowed(elapsed: float) -> int:
    """Most refresh attempts the mandatory backoff allows in ``elapsed`` seconds.

    The k-th delay is at least half of min(2**(k-1), 30) s (jitter), so attempt n comes
    no sooner than the sum of the first n-1 of those after the first.
    """
    attempts, earliest = 1, 0.0
    while True:
        earliest += 0.5 * min(2.0 ** min(attempts - 1, 16), refresh.MANDATORY_BACKOFF_CAP)
        if earliest > elapsed:
            return attempts
        attempts += 1


def requests_against(creds: Any, count: int) -> tuple[list[BaseException], float]:
    client: Any = sources.session_with(creds).create_client("sts")
    errors: list[BaseException] = []
    started = time.monotonic()
    for _ in range(count):
        try:
            client.get_caller_identity()
        except Exception as error:
            errors.append(error)
    return errors, time.monotonic() - started


def assert_clear_refresh_errors(errors: list[BaseException], count: int, fragment: str) -> None:
    kinds = sorted({type(error).__name__ for error in errors})
    figure("B3 errors", count=len(errors), kinds=kinds, first=str(errors[0])[:100] if errors else None)
    assert len(errors) == count and kinds == ["CredentialRefreshError"], kinds
    for error in errors:
        message = str(error)
        assert fragment in message and "\n" not in message, message


def test_method_answer_expired_on_arrival_is_a_spaced_failure(
    sts: StsServer, aws_env: dict[str, str], short_answers: Any
) -> None:
    settings, log = short_answers("custom", -60, BRS_DEFER_REFRESH="true")  # expired a minute ago
    creds = factory.build(settings)
    errors, elapsed = requests_against(creds, 500)
    calls = method_calls(log)
    figure("B3 expired method answer", method_calls=calls, elapsed=round(elapsed, 1))
    assert_clear_refresh_errors(errors, 500, "expired")
    assert 1 <= calls <= attempts_allowed(elapsed), f"{calls} method calls, 500 requests, {elapsed:.1f} s"
    assert creds.stats.failures == calls
    assert sts.count("sts:GetCallerIdentity") == 0  # nothing was signed with an expired key


def test_client_clock_20_minutes_ahead_is_a_spaced_failure(sts: StsServer, aws_env: dict[str, str]) -> None:
    # 900 s credentials from STS, a machine clock 1200 s ahead: expired on arrival.
    clock = SimClock()
    clock.advance(1200)
    settings = from_env({"BRS_ROLE_ARN": ROLE, "BRS_DURATION_SECONDS": "900"})
    creds = factory.build(settings, clock=clock)  # answers NOT shifted: STS's clock is right
    errors, elapsed = requests_against(creds, 500)
    calls = sts.count("sts:AssumeRole")
    figure("B3 clock 20 min ahead", assume_role=calls, elapsed=round(elapsed, 1))
    assert_clear_refresh_errors(errors, 500, "is the clock right?")
    assert 1 <= calls <= attempts_allowed(elapsed), f"{calls} AssumeRole for 500 requests in {elapsed:.1f} s"
    assert sts.count("sts:GetCallerIdentity") == 0


# -- an eager first fetch that fails --------------------------------------------------------------

TWENTY_SESSIONS = """
import json, time
import brs_autopatch, boto3
errors = []
started = time.monotonic()
for _ in range(20):
    try:
        boto3.Session().client("sts").get_caller_identity()
    except Exception as error:
        errors.append(type(error).__name__)
print(json.dumps({"errors": errors, "elapsed": time.monotonic() - started}))
"""


@pytest.mark.parametrize("mode", ["access_denied", "503"])
def test_failed_eager_first_fetch_is_not_retried_by_every_new_session(
    sts: StsServer, run_python: RunPython, role_arn: str, mode: str
) -> None:
    sts.fault("AssumeRole", mode)  # until cleared
    try:
        result = run_python(
            TWENTY_SESSIONS, env={"BRS_ROLE_ARN": role_arn, "BRS_DEFER_REFRESH": "false"}, check=True
        )
    finally:
        sts.clear_faults()  # never left to a later test that does not reset the server
    report = json.loads(result.stdout)
    calls = sts.count("sts:AssumeRole")  # HTTP requests; botocore sends a 503 twice
    figure(f"B4 {mode}", assume_role_requests=calls, elapsed=round(report["elapsed"], 1))
    assert report["errors"] == ["CredentialRefreshError"] * 20
    if mode == "access_denied":
        assert calls == 1, calls  # permanent: the next attempt waits the backoff cap
    else:
        attempts = attempts_allowed(report["elapsed"])
        assert calls <= 2 * attempts, (
            f"{calls} AssumeRole requests for 20 sessions in {report['elapsed']:.1f} s"
        )
    assert sts.count("sts:GetCallerIdentity") == 0


# -- the sweep: accepted settings x lifetimes, counted on a simulated clock -------------------------

SWEEP = [
    # (credential lifetime issued by STS, BRS_* window settings, defer_refresh)
    (12, {}, "true"),
    (12, {}, "false"),
    (61, {"BRS_MANDATORY_REFRESH_SECONDS": "60"}, "true"),
    (310, {}, "false"),
    (900, {"BRS_ADVISORY_REFRESH_SECONDS": "890"}, "false"),
    (900, {"BRS_ADVISORY_REFRESH_SECONDS": "899", "BRS_MANDATORY_REFRESH_SECONDS": "898"}, "true"),
    (900, {"BRS_MANDATORY_REFRESH_SECONDS": "899"}, "false"),
    (3600, {"BRS_ADVISORY_REFRESH_SECONDS": "3600"}, "false"),
    (3600, {"BRS_ADVISORY_REFRESH_SECONDS": "43199", "BRS_MANDATORY_REFRESH_SECONDS": "3599"}, "true"),
    (43200, {}, "false"),
]


@pytest.mark.parametrize(("lifetime", "windows", "defer"), SWEEP)
@pytest.mark.usefixtures("aws_env")
def test_refreshes_per_simulated_lifetime_are_bounded(
    sts: StsServer,
    monkeypatch: pytest.MonkeyPatch,
    lifetime: int,
    windows: dict[str, str],
    defer: str,
) -> None:
    # Fresh credentials are used for at least a fifth of their life (schedule.REUSE_FRACTION),
    # whatever the settings: over 5 lifetimes, at most 5 / 0.2 + 1 refreshes.
    monkeypatch.setattr(Refresher, "max_sleep", 0.01)  # the refresher follows the simulated clock
    sts.set_duration_override(lifetime)
    clock = SimClock()
    settings = from_env({"BRS_ROLE_ARN": ROLE, "BRS_DEFER_REFRESH": defer, **windows})
    creds = simulated(settings, clock)
    sts.reset()
    sts.set_duration_override(lifetime)
    steps = 60
    try:
        for _ in range(steps):
            creds.get_frozen_credentials()
            clock.advance(5 * lifetime / steps)
            if defer == "false":
                time.sleep(0.002)  # room for the refresher thread
    finally:
        creds.stop()
    calls = sts.count("sts:AssumeRole")
    figure(f"B sweep {lifetime} {windows} defer={defer}", assume_role=calls)
    assert 1 <= calls <= 26, f"{calls} AssumeRole in 5 simulated lifetimes of {lifetime} s"
    assert creds.stats.failures == 0


def test_already_expired_answers_are_spaced_on_a_simulated_clock(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    # 500 requests spread over 60 simulated seconds, every answer expired on arrival:
    # attempts follow the mandatory backoff (1, 2, 4 ... 30 s), not the requests.
    clock = SimClock()
    settings = from_env({"BRS_ROLE_ARN": ROLE, "BRS_DURATION_SECONDS": "900"})
    creds = factory.build(settings, clock=clock)
    clock.advance(1200)
    errors = 0
    started = time.monotonic()
    for _ in range(500):
        try:
            creds.get_frozen_credentials()
        except CredentialRefreshError:
            errors += 1
        clock.advance(60 / 500)
    elapsed = 60 + time.monotonic() - started  # simulated plus real
    figure("B3 simulated 60 s", errors=errors, assume_role=sts.count("sts:AssumeRole"))
    assert errors == 500
    assert 1 <= sts.count("sts:AssumeRole") <= attempts_allowed(elapsed)


# -- the property: any method answer, any accepted windows ---------------------------------------

CLOCKED_ANSWER = """
    from datetime import datetime, timezone
    clock = None  # set by the test: the simulated clock the answers follow
    lifetime = 0.0
    calls = 0

    def answer():
        global calls
        calls += 1
        expiry = datetime.fromtimestamp(clock() + lifetime, timezone.utc)
        key = f"AKIDCLOCKED{calls:09d}"
        return {"access_key": key, "secret_key": "s", "token": "t", "expiry_time": expiry}
"""


@pytest.fixture(scope="module")
def clocked_answer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("clocked")
    (directory / "brs_clocked_answer.py").write_text(textwrap.dedent(CLOCKED_ANSWER))
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module("brs_clocked_answer")
    finally:
        sys.path.remove(str(directory))


@hypothesis.settings(max_examples=25, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(
    lifetime=st.floats(-3600, 43200),
    advisory=st.none() | st.integers(1, 43199),
    mandatory=st.none() | st.integers(1, 43198),
)
def test_no_method_answer_refreshes_faster_than_its_schedule_or_backoff(
    clocked_answer: Any, lifetime: float, advisory: int | None, mandatory: int | None
) -> None:
    # Lazy credentials, 100 requests over 5 lifetimes (at least 150 s) of simulated time:
    # usable answers are used for a fifth of their life at least; unusable ones (expired,
    # under 2 s left) are failed refreshes spaced by the mandatory backoff.
    env = {"BRS_METHOD": "custom", "BRS_CUSTOM_METHOD": "brs_clocked_answer:answer"}
    if advisory is not None:
        env["BRS_ADVISORY_REFRESH_SECONDS"] = str(advisory)
    if mandatory is not None:
        env["BRS_MANDATORY_REFRESH_SECONDS"] = str(mandatory)
    try:
        settings = from_env(env)
    except ConfigError:
        hypothesis.reject()  # not an accepted setting
    clock = SimClock()
    clocked_answer.clock, clocked_answer.lifetime, clocked_answer.calls = clock, lifetime, 0
    creds = factory.build(settings, clock=clock)
    span = 5 * max(lifetime, 30.0)
    started = time.monotonic()
    unexpected: list[str] = []
    for _ in range(100):
        try:
            creds.get_frozen_credentials()
        except CredentialRefreshError:
            pass
        except Exception as error:  # botocore's bare RuntimeError, a TypeError ...
            unexpected.append(type(error).__name__)
        clock.advance(span / 100)
    elapsed = span + time.monotonic() - started
    most = attempts_allowed(elapsed)  # refused answers: the backoff spaces the attempts
    if lifetime >= schedule.MIN_USABLE_SECONDS - 0.5:  # accepted (answered a little late)
        most = max(most, math.ceil(elapsed / (0.2 * max(lifetime - 1, 0.5))) + 1)
    assert unexpected == []
    assert 1 <= clocked_answer.calls <= most, (clocked_answer.calls, most)
