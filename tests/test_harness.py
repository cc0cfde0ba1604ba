"""Tests for the test harness itself: fake STS server, faults, fixtures."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from stsclient import (
    DEFAULT_ACCOUNT_ID,
    FAKE_SOURCE_ACCESS_KEY_ID,
    FAKE_SOURCE_SECRET_ACCESS_KEY,
    SERVER_SCRIPT,
    RunPython,
    StsServer,
    StsServerError,
    make_role_arn,
    start_server,
)


def make_client(
    service: str = "sts",
    *,
    attempts: int = 1,
    creds: dict[str, Any] | None = None,
    **config: Any,
) -> Any:
    """A client from a fresh Session (the default session would cache credentials
    across tests) with standard retries limited to ``attempts`` total tries."""
    session = boto3.session.Session()
    kwargs: dict[str, Any] = {}
    if creds is not None:
        kwargs = {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }
    cfg = Config(retries={"mode": "standard", "total_max_attempts": attempts}, **config)
    factory: Any = session.client  # typed per service literal; ours is a plain str
    return factory(service, config=cfg, **kwargs)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# ---------------------------------------------------------------------------
# Basic server behaviour
# ---------------------------------------------------------------------------


def test_server_is_separate_process_on_loopback(sts: StsServer) -> None:
    assert sts.url.startswith("http://127.0.0.1:")
    assert sts.host == "127.0.0.1" and sts.port > 0
    health = sts.health()
    assert health["ok"] is True
    assert sts.process is not None and health["pid"] == sts.process.pid != os.getpid()
    assert sts.is_running()


def test_assume_role_expiration_and_arn(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    assert aws_env["AWS_ENDPOINT_URL"] == sts.url
    before = dt.datetime.now(dt.timezone.utc)
    resp = make_client().assume_role(
        RoleArn=role_arn, RoleSessionName="sess-1", DurationSeconds=900
    )
    creds = resp["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert creds["SecretAccessKey"] and creds["SessionToken"]
    expiration = creds["Expiration"]
    assert expiration.tzinfo is not None  # botocore parses moto's ISO-8601 "Z" timestamp
    assert abs((expiration - (before + dt.timedelta(seconds=900))).total_seconds()) < 30
    assert (
        resp["AssumedRoleUser"]["Arn"]
        == f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-test-role/sess-1"
    )


def test_caller_identity_reflects_signing_credentials(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    source = make_client()
    creds = source.assume_role(RoleArn=role_arn, RoleSessionName="who")["Credentials"]

    ident = make_client(creds=creds).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:assumed-role/brs-test-role/who"
    assert ident["Account"] == DEFAULT_ACCOUNT_ID
    # Keys moto never issued resolve to its placeholder user.
    assert source.get_caller_identity()["Arn"] == f"arn:aws:sts::{DEFAULT_ACCOUNT_ID}:user/moto"

    signers = [c["access_key_id"] for c in sts.calls("GetCallerIdentity")]
    assert signers == [creds["AccessKeyId"], FAKE_SOURCE_ACCESS_KEY_ID]
    assert sts.calls("GetCallerIdentity")[0]["session_token"] == creds["SessionToken"]


def test_cross_account_role_yields_credentials_in_that_account(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    creds = make_client().assume_role(
        RoleArn=make_role_arn("x", "210987654321"), RoleSessionName="xa"
    )["Credentials"]
    ident = make_client(creds=creds).get_caller_identity()
    assert ident["Arn"] == "arn:aws:sts::210987654321:assumed-role/x/xa"


def test_counts_and_reset(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    assert sts.counts() == {}
    client = make_client()
    for _ in range(3):
        client.assume_role(RoleArn=role_arn, RoleSessionName="cnt")
    client.get_caller_identity()
    assert sts.counts() == {"sts:AssumeRole": 3, "sts:GetCallerIdentity": 1}
    assert sts.count("AssumeRole") == 3
    assert sts.count("sts:AssumeRole") == 3
    assert sts.count("AssumeRoleWithWebIdentity") == 0
    sts.reset()
    assert sts.counts() == {} and sts.calls() == []


def test_recorded_calls_params_and_role_chain_order(
    sts: StsServer, aws_env: dict[str, str]
) -> None:
    role_a, role_b = make_role_arn("role-a"), make_role_arn("role-b")
    creds_a = make_client().assume_role(
        RoleArn=role_a,
        RoleSessionName="hop-1",
        DurationSeconds=1800,
        ExternalId="ext-123",
        SerialNumber="arn:aws:iam::123456789012:mfa/dev",
        TokenCode="123456",
    )["Credentials"]
    make_client(creds=creds_a).assume_role(RoleArn=role_b, RoleSessionName="hop-2")

    first, second = sts.calls("AssumeRole")
    assert first["params"]["RoleArn"] == role_a
    assert first["params"]["RoleSessionName"] == "hop-1"
    assert first["params"]["DurationSeconds"] == "1800"
    assert first["params"]["ExternalId"] == "ext-123"
    assert first["params"]["SerialNumber"] == "arn:aws:iam::123456789012:mfa/dev"
    assert first["params"]["TokenCode"] == "123456"
    assert first["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert first["session_token"] is None
    assert first["region"] == "us-east-1"
    assert first["attempt"] == 1 and first["status"] == 200 and first["faulted"] is False

    # The second hop is signed by the first hop's temporary credentials.
    assert second["params"]["RoleArn"] == role_b
    assert "TokenCode" not in second["params"]
    assert second["access_key_id"] == creds_a["AccessKeyId"]
    assert second["session_token"] == creds_a["SessionToken"]
    assert first["seq"] < second["seq"]


def test_web_identity_is_unsigned_and_recorded(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    resp = make_client().assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="web", WebIdentityToken="header.payload.sig"
    )
    assert resp["AssumedRoleUser"]["Arn"].endswith(":assumed-role/brs-test-role/web")
    (call,) = sts.calls("AssumeRoleWithWebIdentity")
    assert call["key"] == "sts:AssumeRoleWithWebIdentity"
    assert call["access_key_id"] is None  # botocore does not sign this operation
    assert call["params"]["WebIdentityToken"] == "header.payload.sig"


def test_other_services_are_counted_and_moto_reset(sts: StsServer, aws_env: dict[str, str]) -> None:
    iam = make_client("iam")
    iam.create_role(
        RoleName="made",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["made"]
    make_client("s3").create_bucket(Bucket="brs-harness-bucket")
    counts = sts.counts()
    assert counts["iam:CreateRole"] == 1 and counts["iam:ListRoles"] == 1
    assert counts["s3:PUT"] == 1

    sts.reset(moto=True)
    assert iam.list_roles()["Roles"] == []
    assert sts.counts() == {"iam:ListRoles": 1}


def test_concurrent_clients(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    # Every request sleeps 0.5 s server-side; finishing 8 of them well under
    # 8 * 0.5 s proves the server handles them in parallel.
    sts.fault("AssumeRole", "delay", delay_seconds=0.5)
    clients = [make_client() for _ in range(8)]
    errors: list[BaseException] = []

    def call(c: Any) -> None:
        try:
            c.assume_role(RoleArn=role_arn, RoleSessionName="par")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    elapsed = time.monotonic() - start
    assert not errors
    assert sts.count("AssumeRole") == 8
    assert elapsed < 3.0


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------


def test_fault_503_once_is_retried(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    sts.fault("AssumeRole", "503", count=1)
    resp = make_client(attempts=3).assume_role(RoleArn=role_arn, RoleSessionName="retry")
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    first, second = sts.calls("AssumeRole")
    assert (first["faulted"], first["fault_mode"], first["status"], first["attempt"]) == (
        True,
        "503",
        503,
        1,
    )
    assert (second["faulted"], second["status"], second["attempt"]) == (False, 200, 2)
    assert first["invocation_id"] == second["invocation_id"]  # same logical call
    assert sts.faults() == []  # count exhausted


def test_fault_503_persistent_exhausts_retries(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    sts.fault("AssumeRole", "503")  # count=None: until cleared
    with pytest.raises(ClientError) as excinfo:
        make_client(attempts=2).assume_role(RoleArn=role_arn, RoleSessionName="retry")
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert excinfo.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert sts.count("AssumeRole") == 2
    assert all(c["faulted"] for c in sts.calls())
    sts.clear_faults()
    make_client().assume_role(RoleArn=role_arn, RoleSessionName="ok")
    assert sts.count("AssumeRole") == 3


def test_fault_throttle(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    sts.fault("AssumeRole", "throttle", count=1)
    with pytest.raises(ClientError) as excinfo:
        make_client().assume_role(RoleArn=role_arn, RoleSessionName="thr")
    err = excinfo.value.response
    assert err["Error"]["Code"] == "Throttling"
    assert err["Error"]["Message"] == "Rate exceeded"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_fault_access_denied_is_not_retried(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    sts.fault("AssumeRole", "access_denied")
    with pytest.raises(ClientError) as excinfo:
        make_client(attempts=3).assume_role(RoleArn=role_arn, RoleSessionName="deny")
    assert excinfo.value.response["Error"]["Code"] == "AccessDenied"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert role_arn in excinfo.value.response["Error"]["Message"]
    assert sts.count("AssumeRole") == 1


def test_fault_delay(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    sts.fault("AssumeRole", "delay", delay_seconds=1.0, count=1)
    client = make_client()
    start = time.monotonic()
    client.assume_role(RoleArn=role_arn, RoleSessionName="slow")
    assert time.monotonic() - start >= 1.0
    (call,) = sts.calls()
    assert (call["faulted"], call["fault_mode"], call["status"]) == (True, "delay", 200)


def test_fault_delay_trips_read_timeout(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    sts.fault("AssumeRole", "delay", delay_seconds=1.5, count=1)
    with pytest.raises(ReadTimeoutError):
        make_client(read_timeout=0.5).assume_role(RoleArn=role_arn, RoleSessionName="slow")


def test_fault_drop_closes_connection(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    sts.fault("AssumeRole", "drop", count=1)
    with pytest.raises(ConnectionClosedError):
        make_client().assume_role(RoleArn=role_arn, RoleSessionName="drop")
    (call,) = sts.calls()
    assert (call["faulted"], call["fault_mode"], call["status"]) == (True, "drop", None)
    make_client().assume_role(RoleArn=role_arn, RoleSessionName="after")  # server still fine


def test_fault_custom_error(sts: StsServer, aws_env: dict[str, str]) -> None:
    sts.fault(
        "sts:GetCallerIdentity",
        "error",
        http_status=400,
        code="ExpiredToken",
        message="The security token included in the request is expired",
        count=1,
    )
    with pytest.raises(ClientError) as excinfo:
        make_client().get_caller_identity()
    assert excinfo.value.response["Error"]["Code"] == "ExpiredToken"


def test_fault_matching_and_removal(sts: StsServer, aws_env: dict[str, str], role_arn: str) -> None:
    sts.fault("AssumeRole", "throttle")
    client = make_client()
    client.get_caller_identity()  # other actions unaffected
    assert sts.calls("GetCallerIdentity")[0]["faulted"] is False
    assert [f["mode"] for f in sts.faults()] == ["throttle"]
    sts.fault("AssumeRole", "none")  # removes the rules for that action
    assert sts.faults() == []
    client.assume_role(RoleArn=role_arn, RoleSessionName="ok")


def test_duration_override_gives_short_lived_credentials(
    sts: StsServer, aws_env: dict[str, str], role_arn: str
) -> None:
    sts.set_duration_override(5)
    before = dt.datetime.now(dt.timezone.utc)
    creds = make_client().assume_role(
        RoleArn=role_arn, RoleSessionName="short", DurationSeconds=900
    )["Credentials"]
    assert abs((creds["Expiration"] - before).total_seconds() - 5) < 3
    (call,) = sts.calls("AssumeRole")
    assert call["params"]["DurationSeconds"] == "900"  # what the client sent
    assert call["duration_override"] == 5
    with pytest.raises(StsServerError, match="duration_override"):
        sts.set_duration_override(0)
    sts.reset()  # clears the override
    creds = make_client().assume_role(
        RoleArn=role_arn, RoleSessionName="normal", DurationSeconds=900
    )["Credentials"]
    assert (creds["Expiration"] - before).total_seconds() > 800


def test_invalid_fault_is_rejected(sts: StsServer) -> None:
    with pytest.raises(StsServerError, match="mode must be one of"):
        sts.fault("AssumeRole", "explode")
    with pytest.raises(StsServerError, match="count must be"):
        sts.fault("AssumeRole", "503", count=0)
    with pytest.raises(StsServerError, match="404"):
        sts._request("GET", "nope")
    assert sts.faults() == []


# ---------------------------------------------------------------------------
# Process lifetime
# ---------------------------------------------------------------------------


def test_start_server_lifecycle_and_teardown() -> None:
    with start_server(timeout=30) as server:
        proc = server.process
        assert proc is not None and proc.poll() is None
        assert port_open(server.host, server.port)
    # SIGTERM is handled: clean exit, process reaped, port closed.
    assert proc.returncode == 0
    assert not port_open(server.host, server.port)
    assert server.stop() == 0  # idempotent


def test_start_server_failure_reports_stderr() -> None:
    with pytest.raises(StsServerError, match=r"exited with status 2(.|\n)*invalid int value"):
        start_server(timeout=30, extra_args=["--port", "not-a-port"])


def test_script_mode_stdout_ready_file_and_sigint(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert wait_until(ready.exists, timeout=30), "server did not become ready"
        url = ready.read_text().strip()
        assert url.startswith("http://127.0.0.1:")
        assert StsServer(url).health()["pid"] == proc.pid
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert out == url + "\n"  # exactly one line on stdout
    assert not ready.exists()  # removed on clean exit


def test_server_exits_when_parent_dies(tmp_path: Path) -> None:
    # Stand-in "parent" whose death the server watches via --parent-pid.
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ready = tmp_path / "ready"
    server = subprocess.Popen(
        [
            sys.executable,
            str(SERVER_SCRIPT),
            "--ready-file",
            str(ready),
            "--parent-pid",
            str(parent.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert wait_until(ready.exists, timeout=30)
        parent.kill()
        parent.wait(timeout=10)
        server.wait(timeout=10)  # raises TimeoutExpired if it kept running
        assert server.returncode == 0
    finally:
        for p in (parent, server):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


# ---------------------------------------------------------------------------
# Environment fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def polluted_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Developer-machine variables that aws_env must remove (requested first)."""
    monkeypatch.setenv("AWS_PROFILE", "prod-admin")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "leaked-token")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::111111111111:role/real")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")
    monkeypatch.setenv("BRS_ROLE_ARN", "arn:aws:iam::111111111111:role/real")
    yield


def test_aws_env_isolates(
    polluted_env: None, aws_env: dict[str, str], sts_server: StsServer
) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "BRS_ROLE_ARN",
    ):
        assert name not in os.environ
    assert not [k for k in os.environ if k.startswith("BRS_")]
    for name, value in aws_env.items():
        assert os.environ[name] == value
    assert aws_env["AWS_ACCESS_KEY_ID"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert aws_env["AWS_SECRET_ACCESS_KEY"] == FAKE_SOURCE_SECRET_ACCESS_KEY
    assert aws_env["AWS_ENDPOINT_URL"] == sts_server.url
    assert aws_env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not Path(aws_env["AWS_CONFIG_FILE"]).exists()
    assert not Path(aws_env["AWS_SHARED_CREDENTIALS_FILE"]).exists()


def test_session_safety_net_is_in_place() -> None:
    # Set by conftest at import, independent of any fixture.
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert not Path(os.environ["AWS_CONFIG_FILE"]).exists()
    assert not Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).exists()


def test_run_python_env_is_isolated(
    polluted_env: None, aws_env: dict[str, str], run_python: RunPython, tmp_path: Path
) -> None:
    os.environ["BRS_LATE"] = "not inherited"  # monkeypatch-free on purpose; cleaned below
    try:
        result = run_python(
            "import json, os; print(json.dumps(dict(os.environ)))",
            env={"EXTRA": "1", "AWS_DEFAULT_REGION": None},
            check=True,
        )
    finally:
        del os.environ["BRS_LATE"]
    child = json.loads(result.stdout)
    assert child["AWS_ACCESS_KEY_ID"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert child["AWS_ENDPOINT_URL"] == aws_env["AWS_ENDPOINT_URL"]
    assert child["EXTRA"] == "1"
    assert "AWS_DEFAULT_REGION" not in child
    assert not [k for k in child if k.startswith("BRS_")]
    assert "AWS_PROFILE" not in child and "AWS_SESSION_TOKEN" not in child
    assert Path(child["HOME"]).is_relative_to(tmp_path)


def test_run_python_talks_to_server(sts: StsServer, run_python: RunPython, role_arn: str) -> None:
    code = (
        "import boto3, sys\n"
        "r = boto3.client('sts').assume_role(RoleArn=sys.argv[1], RoleSessionName='sub')\n"
        "print(r['AssumedRoleUser']['Arn'])\n"
    )
    result = run_python(code, args=[role_arn], check=True)
    assert result.stdout.strip().endswith(":assumed-role/brs-test-role/sub")
    (call,) = sts.calls("AssumeRole")
    assert call["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID


def test_run_python_timeout_fails_with_output(run_python: RunPython) -> None:
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"timed out(.|\n)*started"):
        run_python("import time; print('started', flush=True); time.sleep(30)", timeout=1.5)
    assert time.monotonic() - start < 10
