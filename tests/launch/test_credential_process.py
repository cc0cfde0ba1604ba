"""``brs-run --credential-process``: the role for any SDK through ``credential_process``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from launching import ASSUMED, BRS_RUN, MODULE, ROLE, SESSION, Launch, write
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, StsServer

CREDENTIAL_PROCESS = (*MODULE, "--credential-process")


def test_prints_version_1_json_for_the_role(launch: Launch, sts: StsServer) -> None:
    result = launch(CREDENTIAL_PROCESS)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert answer["Version"] == 1
    assert answer["AccessKeyId"].startswith("ASIA") and answer["AccessKeyId"] != FAKE_SOURCE_ACCESS_KEY_ID
    expiry = datetime.strptime(answer["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert expiry > datetime.now(timezone.utc)
    assert result.stderr == ""
    assert sts.count("sts:AssumeRole") == 1


def test_launcher_flags_after_the_option_and_the_cache(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    other = ROLE.replace("brs-test-role", "flagged")
    cache = tmp_path / "cache"
    first = launch([*CREDENTIAL_PROCESS, "--role-arn", other, "--session-name", "cp"],
                   env={"BRS_CACHE_DIR": str(cache)})
    second = launch([*CREDENTIAL_PROCESS, "--role-arn", other, "--session-name", "cp"],
                    env={"BRS_CACHE_DIR": str(cache)})
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)  # the second from the cache
    assert sts.count("sts:AssumeRole") == 1
    assert sts.calls("sts:AssumeRole")[0]["params"]["RoleArn"] == other


@pytest.mark.parametrize(("args", "env", "status", "expected"), [
    ([], {"BRS_ROLE_ARN": "nope"}, 2, "BRS_ROLE_ARN='nope' is not valid"),
    ([], {"BRS_ROLE_ARN": None}, 2, "BRS_ROLE_ARN is not set"),
    (["--role-arn", ROLE], {"BRS_CREDENTIAL_PROCESS_ACTIVE": "1"}, 2, "called itself"),
    (["python"], {}, 2, "runs no command"),
])
def test_errors_are_one_line_on_stderr_and_nothing_on_stdout(
    launch: Launch, args: list[str], env: dict[str, str | None], status: int, expected: str
) -> None:
    result = launch([*CREDENTIAL_PROCESS, *args], env=env)
    assert result.returncode == status
    assert result.stdout == ""
    assert expected in result.stderr
    if expected != "runs no command":
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_sts_failure_is_one_line_and_exit_1(launch: Launch, sts: StsServer) -> None:
    sts.fault("AssumeRole", "access_denied")
    result = launch(CREDENTIAL_PROCESS, env={"BRS_LOG_LEVEL": "ERROR"})
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AccessDenied" in lines[0], lines


def test_aws_cli_profile_with_credential_process_prints_the_assumed_role(
    launch: Launch, sts: StsServer, tmp_path: Path
) -> None:
    if not BRS_RUN.exists():
        pytest.skip(f"{BRS_RUN} is not installed (pip install -e .)")
    config = write(tmp_path / "aws-config", (
        "[profile p]\n"
        f"credential_process = {BRS_RUN} --credential-process --role-arn {ROLE} --session-name {SESSION}\n"
        "region = us-east-1\n"
    ))
    # The source credentials of brs-run come from the environment; the CLI's
    # explicit --profile uses the credential_process, not those.
    cli = ["aws", "sts", "get-caller-identity", "--profile", "p", "--query", "Arn", "--output", "text"]
    env = {"AWS_CONFIG_FILE": str(config), "BRS_ROLE_ARN": None, "BRS_ROLE_SESSION_NAME": None}
    result = launch(cli, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ASSUMED
    assert sts.calls("sts:GetCallerIdentity")[0]["access_key_id"] != FAKE_SOURCE_ACCESS_KEY_ID
