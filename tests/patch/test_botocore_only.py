"""Programs that use botocore without boto3, the AWS CLI v1 above all, get the role too.

Every case runs in a fresh interpreter: after ``import brs_autopatch``, with a
``sitecustomize`` that imports it, or under the launcher (``python -m brs_autopatch``,
the same as ``brs-run``). Which key signed each request is read at the server.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from launching import Result, app_env, run_command
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, RunPython, StsServer, make_role_arn

ROLE = make_role_arn("botocore-role")
SESSION = "botocore-only"
ASSUMED = f"arn:aws:sts::123456789012:assumed-role/botocore-role/{SESSION}"
ENV = {"BRS_ROLE_ARN": ROLE, "BRS_ROLE_SESSION_NAME": SESSION}
PROFILE_KEY = "AKIDPROFILE000000000"
AWS_CLI = Path(sys.executable).with_name("aws")


def signing_keys(sts: StsServer, action: str = "sts:GetCallerIdentity") -> list[str | None]:
    return [call["access_key_id"] for call in sts.calls(action)]


def role_keys(sts: StsServer) -> set[str | None]:
    """Access keys that are not the source's nor the profile's: the role's."""
    return set(signing_keys(sts)) - {FAKE_SOURCE_ACCESS_KEY_ID, PROFILE_KEY}


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    path = tmp_path / "aws-credentials"
    path.write_text(f"[other]\naws_access_key_id = {PROFILE_KEY}\naws_secret_access_key = p\n")
    return path


# -- botocore sessions after `import brs_autopatch` ---------------------------------------------


def test_botocore_sessions_get_one_shared_role_credentials(sts: StsServer, run_python: RunPython) -> None:
    code = textwrap.dedent(
        """
        import json, sys, threading
        import brs_autopatch
        import botocore.session

        sessions = [botocore.session.get_session(), botocore.session.Session()]
        threads = [threading.Thread(target=lambda: sessions.append(botocore.session.get_session()))
                   for _ in range(8)]
        for thread in threads: thread.start()
        for thread in threads: thread.join()
        credentials = [s.get_credentials() for s in sessions]
        arns = {s.create_client("sts").get_caller_identity()["Arn"] for s in sessions}
        print(json.dumps({
            "arns": sorted(arns),
            "one_object": all(c is credentials[0] for c in credentials),
            "type": type(credentials[0]).__name__,
            "boto3_imported": "boto3" in sys.modules,
        }))
        """
    )
    found = json.loads(run_python(code, env=ENV, check=True).stdout)
    assert found == {
        "arns": [ASSUMED],
        "one_object": True,
        "type": "RoleCredentials",
        "boto3_imported": False,
    }
    assert sts.count("sts:AssumeRole") == 1
    assert signing_keys(sts, "sts:AssumeRole") == [FAKE_SOURCE_ACCESS_KEY_ID]
    assert len(role_keys(sts)) == 1 and sts.count("sts:GetCallerIdentity") == 10


def test_boto3_and_botocore_share_the_credentials_object(run_python: RunPython) -> None:
    code = textwrap.dedent(
        """
        import brs_autopatch, boto3, botocore.session
        a = botocore.session.get_session().get_credentials()
        b = boto3.Session().get_credentials()
        c = boto3.client("sts")._request_signer._credentials
        print(a is b is c)
        """
    )
    assert run_python(code, env=ENV, check=True).stdout.strip() == "True"


def test_explicit_credentials_and_profiles_are_respected(
    sts: StsServer, run_python: RunPython, credentials_file: Path
) -> None:
    code = textwrap.dedent(
        """
        import brs_autopatch, botocore.session
        whoami = lambda client: client.get_caller_identity()["Arn"]

        # 1. keys given to create_client
        whoami(botocore.session.get_session().create_client(
            "sts", aws_access_key_id="AKIDEXPLICITCLIENT01", aws_secret_access_key="x"))
        # 2. session.set_credentials
        session = botocore.session.get_session()
        session.set_credentials("AKIDSETCREDENTIALS01", "x")
        whoami(session.create_client("sts"))
        # 3. an explicit profile
        whoami(botocore.session.Session(profile="other").create_client("sts"))
        # 4. a profile set the way the AWS CLI's --profile sets it
        session = botocore.session.get_session()
        session.set_config_variable("profile", "other")
        whoami(session.create_client("sts"))
        # 5. nothing explicit: the role
        whoami(botocore.session.get_session().create_client("sts"))
        """
    )
    run_python(code, env={**ENV, "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file)}, check=True)
    keys = signing_keys(sts)
    assert keys[:4] == ["AKIDEXPLICITCLIENT01", "AKIDSETCREDENTIALS01", PROFILE_KEY, PROFILE_KEY]
    assert keys[4] not in (FAKE_SOURCE_ACCESS_KEY_ID, PROFILE_KEY)
    assert sts.count("sts:AssumeRole") == 1  # only for the fifth


def test_aws_profile_variable_selects_the_source_not_the_identity(
    sts: StsServer, run_python: RunPython, credentials_file: Path
) -> None:
    # AWS_PROFILE is the environment, not an explicit choice in code: it names the
    # credentials the role is assumed with.
    code = (
        "import brs_autopatch, botocore.session\n"
        "print(botocore.session.get_session().create_client('sts').get_caller_identity()['Arn'])"
    )
    env = {
        **ENV,
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file),
        "AWS_PROFILE": "other",
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
    }
    assert run_python(code, env=env, check=True).stdout.strip() == ASSUMED
    assert signing_keys(sts, "sts:AssumeRole") == [PROFILE_KEY]


def test_botocore_only_script_under_the_launcher(
    sts: StsServer, aws_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import sys, botocore.session\n"
        "print(botocore.session.get_session().create_client('sts').get_caller_identity()['Arn'])\n"
        "assert 'boto3' not in sys.modules\n"
    )
    env = {**app_env(aws_env, tmp_path), **ENV}
    result = run_command([sys.executable, "-m", "brs_autopatch", sys.executable, script], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ASSUMED


# -- the AWS CLI v1 -------------------------------------------------------------------------------


def aws(args: list[str], how: str, env: dict[str, str], cwd: Path) -> Result:
    assert AWS_CLI.exists(), f"{AWS_CLI}: the AWS CLI v1 is part of the test extra (pip install -e '.[test]')"
    if how == "launcher":
        return run_command([sys.executable, "-m", "brs_autopatch", AWS_CLI, *args], env, cwd)
    return run_command([AWS_CLI, *args], env, cwd)


@pytest.fixture
def cli_env(aws_env: dict[str, str], tmp_path: Path, credentials_file: Path) -> dict[str, str]:
    # For the "sitecustomize" runs: what a user could put in site-packages instead of
    # using brs-run. The launcher adds its own bootstrap in front of it.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import brs_autopatch\n")
    return {**app_env(aws_env, tmp_path, site), **ENV, "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file)}


@pytest.mark.parametrize("how", ["sitecustomize", "launcher"])
def test_aws_cli_get_caller_identity_is_the_role(
    sts: StsServer, cli_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    result = aws(
        ["sts", "get-caller-identity", "--endpoint-url", sts.url, "--output", "json"], how, cli_env, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == ASSUMED
    assert signing_keys(sts, "sts:AssumeRole") == [FAKE_SOURCE_ACCESS_KEY_ID]
    assert len(role_keys(sts)) == 1


@pytest.mark.parametrize("how", ["sitecustomize", "launcher"])
def test_aws_cli_profile_option_is_respected(
    sts: StsServer, cli_env: dict[str, str], tmp_path: Path, how: str
) -> None:
    args = ["--profile", "other", "sts", "get-caller-identity", "--endpoint-url", sts.url, "--output", "json"]
    result = aws(args, how, cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert signing_keys(sts) == [PROFILE_KEY]
    assert sts.count("sts:AssumeRole") == 0


def test_aws_cli_unpatched_without_brs_autopatch(
    sts: StsServer, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The control: the same CLI call without the sitecustomize signs with the source keys.
    env = {**cli_env, "PYTHONPATH": cli_env["PYTHONPATH"].split(os.pathsep, 1)[1]}
    result = aws(["sts", "get-caller-identity", "--endpoint-url", sts.url], "plain", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert signing_keys(sts) == [FAKE_SOURCE_ACCESS_KEY_ID] and sts.count("sts:AssumeRole") == 0
