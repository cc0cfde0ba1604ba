"""BRS_PROFILE: the role, its source and its options come from an AWS config profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, REPO_ROOT, RunPython, StsServer, child_env

SOURCE_KEY = "AKIDPROFILESOURCE000"
CONFIG = f"""
[profile src]
aws_access_key_id = {SOURCE_KEY}
aws_secret_access_key = profile-source-secret

[profile prod]
role_arn = arn:aws:iam::123456789012:role/prod
source_profile = src
duration_seconds = 1800
role_session_name = from-profile

[profile chained]
role_arn = arn:aws:iam::123456789012:role/second
source_profile = prod

[profile self]
role_arn = arn:aws:iam::123456789012:role/selfsourced
source_profile = self
aws_access_key_id = AKIDSELFSOURCED00000
aws_secret_access_key = self-secret

[profile norole]
region = eu-west-1
"""
WHO = "import brs_autopatch, boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"


@pytest.fixture
def profile_env(tmp_path: Path) -> dict[str, str | None]:
    config = tmp_path / "aws-config"
    config.write_text(CONFIG)
    # No static keys in the environment: the profile's source_profile supplies them.
    return {"AWS_CONFIG_FILE": str(config), "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}


def test_role_profile_signs_as_the_role(
    sts: StsServer, run_python: RunPython, profile_env: dict[str, str | None]
) -> None:
    result = run_python(WHO, env={**profile_env, "BRS_PROFILE": "prod"}, check=True)
    assert result.stdout.strip() == "arn:aws:sts::123456789012:assumed-role/prod/from-profile"
    (call,) = sts.calls("sts:AssumeRole")
    assert call["access_key_id"] == SOURCE_KEY
    assert call["params"]["DurationSeconds"] == "1800"
    assert call["params"]["RoleArn"] == "arn:aws:iam::123456789012:role/prod"


def test_profile_chain_becomes_a_role_chain(
    sts: StsServer, run_python: RunPython, profile_env: dict[str, str | None]
) -> None:
    result = run_python(WHO, env={**profile_env, "BRS_PROFILE": "chained"}, check=True)
    assert result.stdout.strip().startswith("arn:aws:sts::123456789012:assumed-role/second/")
    first, second = sts.calls("sts:AssumeRole")
    assert (first["params"]["RoleArn"], first["access_key_id"]) == (
        "arn:aws:iam::123456789012:role/prod",
        SOURCE_KEY,
    )
    assert second["params"]["RoleArn"] == "arn:aws:iam::123456789012:role/second"
    assert second["access_key_id"] not in (SOURCE_KEY, None)


def test_self_sourced_profile(
    sts: StsServer, run_python: RunPython, profile_env: dict[str, str | None]
) -> None:
    result = run_python(WHO, env={**profile_env, "BRS_PROFILE": "self"}, check=True)
    assert "assumed-role/selfsourced/" in result.stdout
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == "AKIDSELFSOURCED00000"


def test_explicit_brs_values_win(
    sts: StsServer, run_python: RunPython, profile_env: dict[str, str | None]
) -> None:
    env = {
        **profile_env,
        "BRS_PROFILE": "prod",
        "BRS_ROLE_SESSION_NAME": "explicit",
        "BRS_DURATION_SECONDS": "900",
    }
    result = run_python(WHO, env=env, check=True)
    assert result.stdout.strip() == "arn:aws:sts::123456789012:assumed-role/prod/explicit"
    assert sts.calls("sts:AssumeRole")[0]["params"]["DurationSeconds"] == "900"


def test_credential_source_external_id_and_mfa_serial_come_from_the_profile(
    sts: StsServer, run_python: RunPython, tmp_path: Path
) -> None:
    # docs/configuration.md: BRS_PROFILE takes role_arn, credential_source (botocore's chain, here the
    # environment's keys), external_id and mfa_serial (with BRS_MFA_TOKEN_COMMAND).
    config = tmp_path / "ext-config"
    config.write_text(
        "[profile ext]\n"
        "role_arn = arn:aws:iam::123456789012:role/ext\n"
        "credential_source = Environment\n"
        "external_id = profile-external-id\n"
        "mfa_serial = arn:aws:iam::123456789012:mfa/me\n"
    )
    env = {
        "AWS_CONFIG_FILE": str(config),
        "BRS_PROFILE": "ext",
        "BRS_ROLE_SESSION_NAME": "ext",
        "BRS_MFA_TOKEN_COMMAND": f"{sys.executable} -c print(123456)",
    }
    result = run_python(WHO, env=env, check=True)
    assert result.stdout.strip() == "arn:aws:sts::123456789012:assumed-role/ext/ext"
    (call,) = sts.calls("sts:AssumeRole")
    assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert call["params"]["ExternalId"] == "profile-external-id"
    assert call["params"]["SerialNumber"] == "arn:aws:iam::123456789012:mfa/me"
    assert call["params"]["TokenCode"] == "123456"
    # A command with neither BRS_MFA_SERIAL nor a profile mfa_serial: one line, no STS call.
    config.write_text(config.read_text().replace("mfa_serial", "# mfa_serial"))
    refused = run_python(WHO, env=env)
    assert refused.returncode == 1 and sts.count("sts:AssumeRole") == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "brs_autopatch.errors.ConfigError: BRS_MFA_SERIAL is not set: expected the MFA device serial or ARN"
    )


def _brs_run(
    args: list[str], env: dict[str, str | None], base: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    full = child_env(base, tmp_path, pythonpath=REPO_ROOT, overrides=env)
    return subprocess.run(
        [sys.executable, "-m", "brs_autopatch", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("case", [("missing", "no profile 'missing'"), ("norole", "has no role_arn")])
def test_unusable_profile_is_a_one_line_error_before_start(
    sts: StsServer,
    aws_env: dict[str, str],
    profile_env: dict[str, str | None],
    tmp_path: Path,
    case: tuple[str, str],
) -> None:
    profile, message = case
    marker = tmp_path / "started"
    result = _brs_run(
        ["python", "-c", f"open({str(marker)!r}, 'w')"],
        {**profile_env, "BRS_PROFILE": profile},
        aws_env,
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"BRS_PROFILE='{profile}'" in line and message in line
    assert not marker.exists()


def test_check_shows_where_values_came_from(
    sts: StsServer, aws_env: dict[str, str], profile_env: dict[str, str | None], tmp_path: Path
) -> None:
    result = _brs_run(["--check"], {**profile_env, "BRS_PROFILE": "prod"}, aws_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split(None, 1)[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "from role_arn of profile 'prod'" in lines["role_arns"]
    assert "from profile 'prod' duration_seconds" in lines["duration_seconds"]
    assert "from profile 'prod' source_profile" in lines["source_profile"]
    (source,) = [line for line in result.stdout.splitlines() if line.startswith("source credentials")]
    assert SOURCE_KEY[-4:] in source
    assert json.dumps(result.stdout).count("profile-source-secret") == 0
