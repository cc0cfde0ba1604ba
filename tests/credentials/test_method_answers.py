"""Issue 10 I: every method's answer is checked inside the engine's error handling; an MFA
code that never reached STS may be sent again.

The plugin is a real distribution (``*.dist-info`` with an entry point) put on sys.path,
found by importlib.metadata as an installed one would be.
"""

from __future__ import annotations

import shlex
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import PortForwarder, figure, write_plugin
from stsclient import StsServer, make_role_arn

from brs_autopatch import CredentialRefreshError
from brs_autopatch import build as factory
from brs_autopatch.config.from_env import from_env

PLUGIN = "bad-answers"
PLUGIN_SOURCE = """
    import os
    from datetime import datetime, timedelta, timezone

    def method(context):
        def fetch():
            with open(os.environ["BRS_TEST_CALL_LOG"], "a") as log:
                log.write("call\\n")
            answer = {
                "access_key": "AKIDPLUGIN0000000001",
                "secret_key": "plugin-secret",
                "token": "plugin-token",
                "expiry_time": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
            }
            case = os.environ["BRS_TEST_ANSWER"]
            if case == "tomorrow":
                answer["expiry_time"] = "tomorrow"
            elif case == "no expiry":
                del answer["expiry_time"]
            elif case == "no secret":
                del answer["secret_key"]
            elif case == "not a mapping":
                answer = [answer["access_key"], answer["secret_key"]]
            elif case == "naive string":
                naive = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=1)
                answer["expiry_time"] = naive.isoformat()
            return answer
        return fetch
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    directory = write_plugin(tmp_path / "site", PLUGIN, PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(directory))
    log = tmp_path / "calls.log"
    monkeypatch.setenv("BRS_TEST_CALL_LOG", str(log))

    def build(case: str) -> Any:
        monkeypatch.setenv("BRS_TEST_ANSWER", case)
        return factory.build(from_env({"BRS_METHOD": PLUGIN}))

    build.calls = lambda: len(log.read_text().split()) if log.exists() else 0  # type: ignore[attr-defined]
    return build


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("tomorrow", "expiry_time"),
        ("no expiry", "expiry_time"),
        ("no secret", "secret_key"),
        ("not a mapping", "expected a mapping"),
    ],
)
def test_bad_plugin_answer_is_a_counted_failure_with_backoff(
    aws_env: dict[str, str], plugin: Any, case: str, fragment: str
) -> None:
    creds = plugin(case)
    errors: list[BaseException] = []
    for _ in range(100):
        try:
            creds.get_frozen_credentials()
        except Exception as error:
            errors.append(error)
    kinds = sorted({type(error).__name__ for error in errors})
    figure(f"I {case}", errors=len(errors), kinds=kinds, calls=plugin.calls(), failures=creds.stats.failures)
    assert len(errors) == 100 and kinds == ["CredentialRefreshError"], kinds
    message = str(errors[0])
    assert PLUGIN in message and fragment in message and "\n" not in message, message
    assert "plugin-secret" not in message
    assert all(not error.transient for error in errors if isinstance(error, CredentialRefreshError))
    assert plugin.calls() == 1  # a broken method is permanent: the backoff waits its cap
    assert creds.stats.failures == 1


def test_plugin_naive_expiry_is_normalised_as_utc(aws_env: dict[str, str], plugin: Any) -> None:
    creds = plugin("naive string")
    try:
        frozen = creds.get_frozen_credentials()
    except Exception as error:
        figure("I naive string", error=type(error).__name__)
        raise
    assert frozen.access_key == "AKIDPLUGIN0000000001"
    left = (creds.expiry_time - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < left <= 3600  # read as UTC, whatever the machine's time zone
    for _ in range(100):
        creds.get_frozen_credentials()
    assert plugin.calls() == 1 and creds.stats.failures == 0


# -- MFA: a code that never reached STS --------------------------------------------------------------

ROLE = make_role_arn("mfa-unreachable")
SERIAL = "arn:aws:iam::123456789012:mfa/alice"


def fixed_code_command(tmp_path: Path, code: str) -> tuple[str, Path]:
    """A token command printing the same code on every run (one TOTP step), logging its runs."""
    log = tmp_path / "token-runs.log"
    script = tmp_path / "fixed_code.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            with open(sys.argv[1], "a") as log:
                log.write("run\\n")
            print("code: {code}")
            """
        )
    )
    return shlex.join([sys.executable, str(script), str(log)]), log


def test_mfa_code_is_resent_when_sts_was_unreachable(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    command, log = fixed_code_command(tmp_path, "246810")
    endpoint = PortForwarder((sts.host, sts.port))  # refuses connections until opened
    settings = from_env(
        {
            "BRS_ROLE_ARN": ROLE,
            "BRS_ROLE_SESSION_NAME": "mfa-unreachable",
            "BRS_MFA_SERIAL": SERIAL,
            "BRS_MFA_TOKEN_COMMAND": command,
            "BRS_STS_ENDPOINT_URL": endpoint.url,
        }
    )
    creds = factory.build(settings)
    try:
        with pytest.raises(CredentialRefreshError) as caught:
            creds.get_frozen_credentials()
        assert caught.value.transient and "STS unreachable" in str(caught.value)
        assert sts.count("sts:AssumeRole") == 0  # the code never reached STS
        endpoint.open()
        # The retry comes after the mandatory backoff (at most 1 s), not after the 30 s cap
        # that a refused ("already used") code would cost.
        deadline = time.monotonic() + 5
        last: BaseException | None = None
        frozen = None
        while frozen is None and time.monotonic() < deadline:
            try:
                frozen = creds.get_frozen_credentials()
            except CredentialRefreshError as error:
                last = error
                time.sleep(0.05)
        figure(
            "I MFA", recovered=frozen is not None, last=str(last)[:120], codes=len(log.read_text().split())
        )
        assert frozen is not None, f"no credentials within 5 s: {last}"
    finally:
        endpoint.close()
    assert [call["params"].get("TokenCode") for call in sts.calls("sts:AssumeRole")] == ["246810"]
    assert len(log.read_text().split()) == 2  # asked twice, the same code both times
    assert endpoint.connections == 1
