"""MFA that survives refresh: one code per AssumeRole, never per request, never reused or logged.

Refreshes are forced with :class:`Timeline`, a clock the local STS follows (see its
docstring): the decision to refresh is botocore's own (``RefreshableCredentials._refresh``
with our clock as its ``time_fetcher``), and every AssumeRole is real and recorded by
the server, TokenCode included.
"""

from __future__ import annotations

import functools
import itertools
import logging
import shlex
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import SERIAL, Timeline
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer, make_role_arn

from brs_autopatch import ConfigError, CredentialRefreshError, RefreshableSession
from brs_autopatch import build as factory
from brs_autopatch.config.from_env import from_env
from brs_autopatch.credentials import sources
from brs_autopatch.credentials.engine import RoleCredentials
from brs_autopatch.credentials.mfa import MfaError, OneUse, command_provider

ROLE = make_role_arn("mfa-role")
SESSION = "mfa-test"
CALLS_BETWEEN_REFRESHES = 5


def write_token_command(tmp_path: Path, body: str = "") -> tuple[str, Path]:
    """A token command: appends its code to a log file, prints "code: NNNNNN".

    ``body`` runs first (to fail, hang, print something else). Returns the command
    line for BRS_MFA_TOKEN_COMMAND and the log file (one line per run).
    """
    log = tmp_path / "token-runs.log"
    script = tmp_path / "token command.py"  # a space: proves shlex splitting, no shell
    script.write_text(
        textwrap.dedent(
            """
            import pathlib, sys
            log = pathlib.Path(sys.argv[1])
            runs = len(log.read_text().splitlines()) + 1 if log.exists() else 1
            code = f"{(271828 * runs) % 900000 + 100000:06d}"  # a fresh code per run
            with log.open("a") as handle:
                handle.write(code + "\\n")
            """
        )
        + textwrap.dedent(body)
        + '\nprint(f"code: {code}")\n'
    )
    command = shlex.join([sys.executable, str(script), str(log)])
    return command, log


def runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def mfa_env(command: str, **extra: str) -> dict[str, str]:
    return {
        "BRS_ROLE_ARN": ROLE,
        "BRS_ROLE_SESSION_NAME": SESSION,
        "BRS_DURATION_SECONDS": "900",
        "BRS_MFA_SERIAL": SERIAL,
        "BRS_MFA_TOKEN_COMMAND": command,
        **extra,
    }


def sts_client_with(creds: RoleCredentials) -> Any:
    return sources.session_with(creds).create_client("sts")


def token_codes(sts: StsServer) -> list[str | None]:
    return [call["params"].get("TokenCode") for call in sts.calls("sts:AssumeRole")]


# -- once per refresh, never per request, never reused --------------------------------------------


def test_three_refreshes_three_command_runs_each_code_sent_once(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    command, log = write_token_command(tmp_path)
    timeline = Timeline(sts)
    creds = factory.build(from_env(mfa_env(command)), clock=timeline)
    client = sts_client_with(creds)

    for refresh in range(4):  # the first fetch, then three refreshes
        if refresh:
            timeline.into_advisory_window(creds)
        for _ in range(CALLS_BETWEEN_REFRESHES):
            identity = client.get_caller_identity()
        assert identity["Arn"].endswith(f":assumed-role/mfa-role/{SESSION}")
        assert sts.count("sts:AssumeRole") == refresh + 1
        assert len(runs(log)) == refresh + 1

    codes = runs(log)
    assert len(set(codes)) == 4
    assert token_codes(sts) == codes  # each code went to STS exactly once, in order
    for call in sts.calls("sts:AssumeRole"):
        assert call["params"]["SerialNumber"] == SERIAL
        assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
        assert call["attempt"] == 1
    assert sts.count("sts:GetCallerIdentity") == 4 * CALLS_BETWEEN_REFRESHES
    # Every refresh was botocore's request-path refresh, not a side channel.
    assert creds.stats.request_path_fetches == 4 and creds.stats.failures == 0
    # 900 s credentials on a consistent timeline:
    assert (creds.schedule.advisory, creds.schedule.mandatory) == (300, 60)


def test_refreshable_session_provider_called_once_per_refresh_even_from_threads(
    sts: StsServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    timeline = Timeline(sts)
    monkeypatch.setattr(factory, "build", functools.partial(factory.build, clock=timeline))
    counter = itertools.count(1)
    lock = threading.Lock()
    given: list[str] = []

    def provider() -> str:
        with lock:
            code = f"{next(counter) * 111111 % 1000000:06d}"
            given.append(code)
        return code

    session = RefreshableSession(
        {"RoleArn": ROLE, "RoleSessionName": SESSION, "DurationSeconds": 900, "SerialNumber": SERIAL},
        mfa_token_provider=provider,
    )
    client = session.client("sts")
    client.get_caller_identity()
    for _ in range(3):
        timeline.into_advisory_window(session.refreshable_credentials)
        # 64 requests from 8 threads inside the advisory window: one refresh.
        with ThreadPoolExecutor(8) as pool:
            arns = set(pool.map(lambda _: client.get_caller_identity()["Arn"], range(64)))
        assert len(arns) == 1 and ":assumed-role/mfa-role/" in arns.pop()
    assert len(given) == 4
    assert token_codes(sts) == given
    assert sts.count("sts:GetCallerIdentity") == 1 + 3 * 64


def test_a_code_seen_before_is_never_sent_again(
    sts: StsServer, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    timeline = Timeline(sts)
    answers = iter(["123456", "123456", "654321"])  # a TOTP code repeats within its 30 s step
    creds = factory.build(
        from_env(mfa_env("unused")), mfa_token_provider=lambda: next(answers), clock=timeline
    )
    client = sts_client_with(creds)
    caplog.set_level(logging.WARNING, logger="brs_autopatch")

    client.get_caller_identity()
    timeline.into_advisory_window(creds)
    client.get_caller_identity()  # the refresh fails: current credentials keep serving
    assert token_codes(sts) == ["123456"]
    assert any("already used" in record.getMessage() for record in caplog.records)

    # The backoff ends before the mandatory window starts: just before it, try again.
    timeline.jump_to(creds.expiry_time.timestamp() - creds.windows[1] - 0.5)
    client.get_caller_identity()
    assert token_codes(sts) == ["123456", "654321"]


def test_one_use_rejects_repeats_and_non_codes() -> None:
    answers = iter(["111111", " 222222\n", "222222", "12345", "abcdef"])
    one_use = OneUse(lambda: next(answers))
    assert one_use() == "111111"
    assert one_use() == "222222"
    with pytest.raises(MfaError, match="already used"):
        one_use()
    for _ in range(2):
        with pytest.raises(MfaError, match="not a 6-digit code") as caught:
            one_use()
        assert "12345" not in str(caught.value) and "abcdef" not in str(caught.value)


def test_sts_failure_is_not_retried_with_the_same_code(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    # botocore retries a 503 by resending the request, TokenCode included; STS may have
    # consumed that code. Here the retry is ours, after a backoff, with a new code.
    command, log = write_token_command(tmp_path)
    timeline = Timeline(sts)
    creds = factory.build(from_env(mfa_env(command)), clock=timeline)
    client = sts_client_with(creds)
    sts.fault("AssumeRole", "503", count=1)

    with pytest.raises(CredentialRefreshError) as caught:
        client.get_caller_identity()
    assert caught.value.transient and "503" in str(caught.value)
    with pytest.raises(CredentialRefreshError):  # inside the backoff: no run, no call
        client.get_caller_identity()
    assert len(runs(log)) == 1 and sts.count("sts:AssumeRole") == 1

    timeline.jump(2)  # the first retry comes after at most 1 s
    assert ":assumed-role/mfa-role/" in client.get_caller_identity()["Arn"]
    assert token_codes(sts) == runs(log) and len(set(runs(log))) == 2
    assert [call["status"] for call in sts.calls("sts:AssumeRole")] == [503, 200]


# -- failures are clear, permanent and not retried per request ---------------------------------------

FAILURES = {
    "missing": (
        "/nonexistent/bin/ykman oath accounts code -s aws",
        "MFA token command not found: /nonexistent",
    ),
    "timeout": ("import time; time.sleep(60)", "timed out after 1 s"),
    "no-code": ("print('touch your YubiKey'); raise SystemExit(0)", "printed no 6-digit code"),
    "two-codes": (
        "print('aws 111111'); print('gcp 222222'); raise SystemExit(0)",
        "printed 2 6-digit codes, expected one",
    ),
    "exit": (
        "print(code); sys.stderr.write('warning\\nERROR: no YubiKey detected\\n'); raise SystemExit(3)",
        "exited 3: ERROR: no YubiKey detected",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failing_token_command_gives_its_clear_error(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    body, fragment = FAILURES[case]
    if case == "missing":
        command, log = body, tmp_path / "never-written"
    else:
        command, log = write_token_command(tmp_path, body)
    timeline = Timeline(sts)
    creds = factory.build(from_env(mfa_env(command, BRS_MFA_TIMEOUT_SECONDS="1")), clock=timeline)
    client = sts_client_with(creds)

    with pytest.raises(CredentialRefreshError) as caught:
        client.get_caller_identity()
    message = str(caught.value)
    assert fragment in message and ROLE in message and "\n" not in message
    assert not caught.value.transient  # a broken command is not fixed by asking again soon
    for code in runs(log):
        assert code not in message
    with pytest.raises(CredentialRefreshError):
        client.get_caller_identity()  # inside the backoff: the command does not run again
    assert len(runs(log)) == (0 if case == "missing" else 1)
    assert sts.count("sts:AssumeRole") == 0


def test_timed_out_command_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(60)
            """
        )
    )
    provide = command_provider([sys.executable, str(script)], timeout=2)
    with pytest.raises(MfaError, match="timed out after 2 s"):
        provide()
    assert pid_file.exists()
    assert wait_gone(int(pid_file.read_text()))


def wait_gone(pid: int, limit: float = 10.0) -> bool:
    """Whether ``pid`` is gone (or a zombie nobody reaped yet) within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_token_command_is_not_run_through_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "shell-ran"
    # With a shell, `;` would run touch. Without one it is just an argument.
    provide = command_provider(
        [sys.executable, "-c", "import sys; print(sys.argv[1:])", f"; touch {marker}", "123456"],
        timeout=10,
    )
    assert provide() == "123456"
    assert not marker.exists()


# -- the code appears in no log line ----------------------------------------------------------------


def test_codes_appear_in_no_log_line(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything at DEBUG, botocore included: its request log prints every parameter.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="brs_autopatch")
    command, log = write_token_command(
        tmp_path,
        # Third run: a code on stdout *and* stderr, then a failure.
        "if runs == 3:\n    print(code); sys.stderr.write(f'code {code} rejected\\n'); raise SystemExit(1)\n",
    )
    timeline = Timeline(sts)
    creds = factory.build(from_env(mfa_env(command)), clock=timeline)
    client = sts_client_with(creds)
    client.get_caller_identity()  # run 1: fetched
    timeline.into_advisory_window(creds)
    client.get_caller_identity()  # run 2: refreshed
    timeline.jump_to(creds.expiry_time.timestamp() - creds.windows[1] / 2)
    with pytest.raises(CredentialRefreshError):
        client.get_caller_identity()  # run 3: fails inside the mandatory window (traceback logged)
    timeline.jump(40)  # past the mandatory backoff (at most 30 s)
    sts.fault("AssumeRole", "access_denied", count=1)
    with pytest.raises(CredentialRefreshError):
        client.get_caller_identity()  # run 4: STS refuses the code
    codes = runs(log)
    assert len(codes) == 4 and token_codes(sts) == [codes[0], codes[1], codes[3]]

    formatter = logging.Formatter()
    lines = [
        record.getMessage() + (formatter.formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    ]
    leaks = [line for line in lines for code in codes if code in line]
    assert leaks == []
    # The check is not vacuous: botocore did log the AssumeRole parameters, masked.
    assert any("'TokenCode': '******'" in line or "'TokenCode': '(redacted)'" in line for line in lines)
    assert any(record.name == "brs_autopatch" for record in caplog.records)


# -- settings ---------------------------------------------------------------------------------------


def test_serial_and_command_go_together() -> None:
    with pytest.raises(ConfigError, match="BRS_MFA_TOKEN_COMMAND"):
        from_env({"BRS_ROLE_ARN": ROLE, "BRS_MFA_SERIAL": SERIAL})
    with pytest.raises(ConfigError, match="BRS_MFA_SERIAL"):
        from_env({"BRS_ROLE_ARN": ROLE, "BRS_MFA_TOKEN_COMMAND": "ykman oath accounts code -s aws"})
    settings = from_env(mfa_env("ykman oath accounts code -s 'aws prod'", BRS_MFA_TIMEOUT_SECONDS="5"))
    assert settings.mfa_token_command == ("ykman", "oath", "accounts", "code", "-s", "aws prod")
    assert settings.mfa_timeout_seconds == 5


def test_refreshable_session_needs_serial_and_provider_together(aws_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SerialNumber"):
        RefreshableSession({"RoleArn": ROLE}, mfa_token_provider=lambda: "123456")
    with pytest.raises(ConfigError, match="mfa_token_provider"):
        RefreshableSession({"RoleArn": ROLE, "SerialNumber": SERIAL})
