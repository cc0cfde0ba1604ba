"""Role chaining: BRS_ROLE_ARN="A,B" assumes A with the source credentials, then B with A's.

Which credentials signed what is read at the server: each recorded request carries
the access key that signed it, and moto answers GetCallerIdentity for any key it
issued (it checks no signature), which tells whose key it is.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import boto3
import pytest
from engine_helpers import SERIAL, Timeline
from stsclient import FAKE_SOURCE_ACCESS_KEY_ID, RunPython, StsServer, make_role_arn

from brs_autopatch import ConfigError
from brs_autopatch import build as factory
from brs_autopatch.config.from_env import from_env
from brs_autopatch.credentials import sources
from brs_autopatch.credentials.engine import RoleCredentials

ROLE_A = make_role_arn("chain-a")
ROLE_B = make_role_arn("chain-b")
SESSION = "chain"
CHAIN = {"BRS_ROLE_ARN": f"{ROLE_A},{ROLE_B}", "BRS_ROLE_SESSION_NAME": SESSION}
ASSUMED_B = f"arn:aws:sts::123456789012:assumed-role/chain-b/{SESSION}"


def role_client(creds: RoleCredentials) -> Any:
    """An STS client of a boto3 session whose only credentials are ``creds``."""
    return boto3.Session(botocore_session=sources.session_with(creds)).client("sts")


def owner_of(sts: StsServer, call: dict[str, Any]) -> str:
    """Whose credentials signed ``call``: moto's GetCallerIdentity for its key and token."""
    client = boto3.client(
        "sts",
        aws_access_key_id=call["access_key_id"],
        aws_secret_access_key="not-checked-by-moto",
        aws_session_token=call["session_token"],
        endpoint_url=sts.url,
        region_name="us-east-1",
    )
    arn: str = client.get_caller_identity()["Arn"]
    return arn


def assume_calls(sts: StsServer) -> list[tuple[str, str, int]]:
    """(role name, signing key, HTTP status) of every AssumeRole, oldest first."""
    return [
        (call["params"]["RoleArn"].rsplit("/", 1)[-1], call["access_key_id"], call["status"])
        for call in sts.calls("sts:AssumeRole")
    ]


def test_two_hop_chain_is_role_b_signed_a_then_b(sts: StsServer, aws_env: dict[str, str]) -> None:
    creds = factory.build(from_env({**CHAIN, "BRS_DURATION_SECONDS": "3600"}))
    client = role_client(creds)
    assert client.get_caller_identity()["Arn"] == ASSUMED_B

    first, second = sts.calls("sts:AssumeRole")
    assert first["params"]["RoleArn"] == ROLE_A
    assert first["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
    assert second["params"]["RoleArn"] == ROLE_B
    assert second["params"]["DurationSeconds"] == "3600"
    (whoami,) = sts.calls("sts:GetCallerIdentity")
    assert whoami["access_key_id"] == creds.get_frozen_credentials().access_key
    assert whoami["access_key_id"] not in (FAKE_SOURCE_ACCESS_KEY_ID, second["access_key_id"])
    assert owner_of(sts, second) == f"arn:aws:sts::123456789012:assumed-role/chain-a/{SESSION}"
    for _ in range(20):
        client.get_caller_identity()
    assert sts.count("sts:AssumeRole") == 2


def test_each_hop_refreshes_on_its_own_schedule(sts: StsServer, aws_env: dict[str, str]) -> None:
    timeline = Timeline(sts)
    creds = factory.build(from_env({**CHAIN, "BRS_DURATION_SECONDS": "900"}), clock=timeline)
    client = role_client(creds)
    client.get_caller_identity()
    key_a1 = sts.calls("sts:AssumeRole")[1]["access_key_id"]
    assert assume_calls(sts) == [("chain-a", FAKE_SOURCE_ACCESS_KEY_ID, 200), ("chain-b", key_a1, 200)]

    # Both hops were issued together for 900 s: both are due. B's refresh asks A for
    # credentials to sign with, A refreshes first (its own decision) and fails.
    timeline.into_advisory_window(creds)
    sts.fault("AssumeRole", "access_denied", count=1)
    for _ in range(5):
        assert client.get_caller_identity()["Arn"] == ASSUMED_B
    # A failed and keeps serving its current credentials (backing off on its own);
    # B did not wait for A: it refreshed, signed with A's still-valid key.
    assert assume_calls(sts)[2:] == [("chain-a", FAKE_SOURCE_ACCESS_KEY_ID, 403), ("chain-b", key_a1, 200)]

    # 150 s later A's credentials are past A's backoff and inside A's mandatory window,
    # but B's are fresh: nothing needs A, so nothing calls STS.
    timeline.jump(150)
    for _ in range(5):
        client.get_caller_identity()
    assert sts.count("sts:AssumeRole") == 4

    # B is due: it asks A, whose credentials have expired by now. A refreshes (with the
    # source), then B (with A's new key).
    timeline.into_advisory_window(creds)
    assert client.get_caller_identity()["Arn"] == ASSUMED_B
    (a_role, a_key, a_status), (b_role, key_a2, b_status) = assume_calls(sts)[4:]
    assert (a_role, a_key, a_status) == ("chain-a", FAKE_SOURCE_ACCESS_KEY_ID, 200)
    assert (b_role, b_status) == ("chain-b", 200) and key_a2 != key_a1
    assert owner_of(sts, sts.calls("sts:AssumeRole")[-1]).startswith(
        "arn:aws:sts::123456789012:assumed-role/chain-a/"
    )


def test_mfa_and_external_id_go_to_the_first_hop_only(sts: StsServer, aws_env: dict[str, str]) -> None:
    codes = iter(["123456", "234567"])
    settings = from_env(
        {**CHAIN, "BRS_MFA_SERIAL": SERIAL, "BRS_MFA_TOKEN_COMMAND": "unused", "BRS_EXTERNAL_ID": "ext-a"}
    )
    creds = factory.build(settings, mfa_token_provider=lambda: next(codes))
    role_client(creds).get_caller_identity()
    first, second = (call["params"] for call in sts.calls("sts:AssumeRole"))
    assert (first["SerialNumber"], first["TokenCode"], first["ExternalId"]) == (SERIAL, "123456", "ext-a")
    assert not {"SerialNumber", "TokenCode", "ExternalId"} & set(second)


@pytest.mark.parametrize("duration, ok", [("3600", True), ("3601", False), ("43200", False)])
def test_chained_sessions_are_capped_at_one_hour(duration: str, ok: bool) -> None:
    env = {**CHAIN, "BRS_DURATION_SECONDS": duration}
    if ok:
        assert from_env(env).role_arns == (ROLE_A, ROLE_B)
        return
    with pytest.raises(ConfigError, match="at most 3600 with a role chain"):
        from_env(env)
    # A single role may last longer.
    assert from_env({**env, "BRS_ROLE_ARN": ROLE_A}).duration_seconds == int(duration)


def test_three_hops_and_role_names_with_commas(sts: StsServer, aws_env: dict[str, str]) -> None:
    comma = make_role_arn("with,comma")
    creds = factory.build(
        from_env({"BRS_ROLE_ARN": f"{ROLE_A}, {comma},{ROLE_B}", "BRS_ROLE_SESSION_NAME": SESSION})
    )
    assert isinstance(creds, RoleCredentials) and creds.label == ROLE_B
    role_client(creds).get_caller_identity()
    assert [role for role, _, _ in assume_calls(sts)] == ["chain-a", "with,comma", "chain-b"]


def test_chain_under_import_brs_autopatch(sts: StsServer, run_python: RunPython) -> None:
    code = textwrap.dedent(
        """
        import json, brs_autopatch, boto3, botocore.session
        arns = [boto3.client("sts").get_caller_identity()["Arn"],
                boto3.Session().client("sts").get_caller_identity()["Arn"],
                botocore.session.get_session().create_client("sts").get_caller_identity()["Arn"]]
        print(json.dumps(arns))
        """
    )
    result = run_python(code, env=CHAIN, check=True)
    assert json.loads(result.stdout) == [ASSUMED_B] * 3
    assert [role for role, _, _ in assume_calls(sts)] == ["chain-a", "chain-b"]
    assert sts.calls("sts:AssumeRole")[0]["access_key_id"] == FAKE_SOURCE_ACCESS_KEY_ID
