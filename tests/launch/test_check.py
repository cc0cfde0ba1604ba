"""``brs-run --check``: one real AssumeRole against the local STS, a report, no secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from launching import ASSUMED, MODULE, ROLE, Launch, Result
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, FAKE_SOURCE_SECRET_ACCESS_KEY, StsServer

from brs_autopatch.launch.check import parse_version

EXTERNAL_ID = "external-id-never-printed"
# A secret access key or a session token: a long run of base64 characters.
SECRET_SHAPED = re.compile(r"[A-Za-z0-9/+=]{40,}")


def _report(result: Result) -> dict[str, str]:
    """The report's ``name  value`` lines: names in a 22-character column."""
    return {line[:23].strip(): line[23:] for line in result.stdout.splitlines()}


def _assert_no_secret(result: Result, *secrets: str) -> None:
    output = result.stdout + result.stderr
    for secret in (FAKE_SOURCE_SECRET_ACCESS_KEY, EXTERNAL_ID, *secrets):
        assert secret not in output
    # The two header lines name paths (the package, the interpreter); nothing else may
    # look like a key or a token.
    rest = "\n".join(result.stdout.splitlines()[2:]) + result.stderr
    assert SECRET_SHAPED.search(rest) is None, rest


def test_check_assumes_the_role_once_and_reports_without_secrets(
    launch: Launch, sts: StsServer
) -> None:
    result = launch([*MODULE, "--check"], env={"BRS_EXTERNAL_ID": EXTERNAL_ID})
    assert result.returncode == 0, result.stdout + result.stderr
    report = _report(result)
    assert report["role_arns"] == ROLE
    assert report["external_id"] == "(set, hidden)"
    assert report["caller identity"] == ASSUMED
    assert report["account"] == "123456789012"
    assert report["source credentials"] == f"env (...{FAKE_SOURCE_ACCESS_KEY_ID[-4:]})"
    assert report["boto3"].endswith("(supported, tested)")
    assert report["botocore"].endswith("(supported, tested)")
    assert "advisory 900 s, mandatory 60 s" in report["refresh windows"]
    assert report["expires"].endswith("(in 59 min 59 s)") or "(in 1 h 00 min)" in report["expires"]
    assert report["result"] == "OK"
    assert result.stderr == ""
    assert sts.count("sts:AssumeRole") == 1
    assume = sts.calls("sts:AssumeRole")[0]
    assert assume["params"]["ExternalId"] == EXTERNAL_ID  # used, not shown
    source, identity = sts.calls("sts:GetCallerIdentity")  # the source's first, then the role's
    assert source["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    # moto's answer for the fake source keys: proves the source, not the role, was asked.
    assert report["source identity"] == "arn:aws:sts::123456789012:user/moto"
    assert report["sts endpoint"] == f"{sts.url} (region us-east-1)"
    issued_key, issued_token = identity["access_key_id"], identity["session_token"]
    assert issued_token  # signed with the role's session credentials
    _assert_no_secret(result, issued_key, issued_token)
    assert report["access key"] == f"...{issued_key[-4:]}"


def test_check_reports_why_assume_role_failed(launch: Launch, sts: StsServer) -> None:
    sts.fault("AssumeRole", "access_denied")
    result = launch([*MODULE, "--check"])
    assert result.returncode == 1
    report = _report(result)
    assert report["result"].startswith("FAILED: could not refresh credentials for " + ROLE)
    assert "AccessDenied" in report["result"]
    assert result.stderr.splitlines() == [f"brs-run --check: {report['result']}"]
    _assert_no_secret(result)


@pytest.mark.parametrize(("env", "reason"), [
    ({"BRS_DURATION_SECONDS": "5"}, "BRS_DURATION_SECONDS='5' is not valid"),
    ({"BRS_ROLE_ARN": None}, "BRS_ROLE_ARN is not set"),
    ({"BRS_ASSUME_ROLE_KWARGS": '{"Bogus": 1}'}, "BRS_ASSUME_ROLE_KWARGS has unknown key 'Bogus'"),
    ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "no source credentials"),
], ids=["bad-value", "no-role", "bad-kwargs", "no-source"])
def test_check_fails_with_the_reason(
    launch: Launch, sts: StsServer, env: dict[str, str | None], reason: str
) -> None:
    result = launch([*MODULE, "--check"], env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert reason in _report(result)["result"]
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert sts.count("sts:AssumeRole") == 0


def test_check_of_a_disabled_configuration_passes_without_calling_sts(
    launch: Launch, sts: StsServer
) -> None:
    result = launch([*MODULE, "--check"], env={"BRS_ENABLED": "false"})
    assert result.returncode == 0, result.stderr
    assert "BRS_ENABLED is false" in _report(result)["result"]
    assert sts.count("sts:AssumeRole") == 0


def test_check_runs_no_command(launch: Launch, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    result = launch([*MODULE, "--check", "python", "-c", f"open({str(marker)!r}, 'w').close()"])
    assert result.returncode == 2
    assert "--check runs no command" in result.stderr
    assert not marker.exists()


def test_check_honours_the_flags(launch: Launch, sts: StsServer) -> None:
    result = launch([*MODULE, "--session-name", "checked", "--duration-seconds", "1800", "--check"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert _report(result)["caller identity"].endswith("/brs-test-role/checked")
    assert sts.calls("sts:AssumeRole")[0]["params"]["DurationSeconds"] == "1800"


def test_parse_version() -> None:
    assert parse_version("1.44.8") == (1, 44, 8)
    assert parse_version("1.34.0rc1") == (1, 34, 0)
    assert parse_version("2.0.dev3") == (2, 0)
    assert parse_version("garbage") == ()
